"""A guest on the lab: routed vif reachable through core; core's strict reverse-path filter."""

from __future__ import annotations

import re
import time

import pytest

from lab import baseline, guest
from lab import topology as t
from lab.fixtures import LabHandle, VmFactory

pytestmark = pytest.mark.lab


def test_guest_on_old_answers_client_through_core(lab: LabHandle, lab_vms: VmFactory) -> None:
    vm = lab_vms("old", "vm-boot", vif=0)
    # The blog's vif-route script ran: /32 on vif0, proxy_arp on.
    routes = lab.run("old", ["ip", "route", "show", "dev", "vif0"]).stdout
    assert f"{vm.ip} " in routes + " "
    assert lab.run("old", ["cat", "/proc/sys/net/ipv4/conf/vif0/proxy_arp"]).stdout.strip() == "1"
    # core routes the prefix to old.
    assert baseline.core_route() == "old"

    r = lab.probe(vm.ip, 2.0, http=True)
    print(r.summary())
    assert r.received >= 0.9 * r.sent, r.summary()
    assert sum(1 for *_, ok in r.http if ok) >= 10, r.summary()
    page = lab.run(
        "client", ["busybox", "wget", "-q", "-O", "-", f"http://{vm.ip}/"], timeout=10
    ).stdout
    assert f"glidepath guest {vm.name} {vm.ip}" in page

    # The writer appends to the disk: more records a second later, none missing.
    before = guest.read_sequence("old", vm.disk_path)
    time.sleep(1.0)
    after = guest.read_sequence("old", vm.disk_path)
    assert len(after) > len(before) > 0
    assert guest.sequence_gaps(after) == []


def _rp_filter_drops() -> int:
    """core's IPReversePathFilter counter (packets dropped by rp_filter)."""
    text = baseline.run(t.CORE, ["cat", "/proc/net/netstat"]).stdout
    head, vals = [ln.split() for ln in text.splitlines() if ln.startswith("TcpExt:")][:2]
    return int(dict(zip(head, vals, strict=False))["IPReversePathFilter"])


def test_strict_core_drops_replies_from_the_wrong_host(lab: LabHandle, lab_vms: VmFactory) -> None:
    vm = lab_vms("old", "vm-strict", vif=1)
    assert lab.probe(vm.ip, 1.0).received > 50
    # Move it to new without the blog's tunnel and mark; core still routes to old.
    baseline.prepare_disk(vm.name, "old", "new")
    baseline.virsh_migrate(vm.name, "old", "new")
    assert lab.where(vm.name) == ["new"]
    assert baseline.core_route() == "old"
    r = lab.probe(vm.ip, 1.0)
    print("moved, no tunnel:", r.summary())
    assert r.received == 0, r.summary()

    # Inbound through the tunnel (old -> new), but no mark: the VM's replies go
    # out of new's uplink with a source core routes to old, and core drops them.
    tun = baseline.open_tunnel("old", "new")
    try:
        baseline.add_source_route("old", tun)
        drops0 = _rp_filter_drops()
        dump = lab.popen(
            "new",
            [
                "tcpdump",
                "-i",
                "br0",
                "-n",
                "-l",
                "-c",
                "5",
                "-Q",
                "out",
                "src",
                vm.ip,
                "and",
                "icmp",
            ],
        )
        time.sleep(0.5)
        r = lab.probe(vm.ip, 1.5)
        dump.wait(5)
        out = dump.stdout.read() if dump.stdout else ""
        drops = _rp_filter_drops() - drops0
        print(f"tunnel, no mark: {r.summary()}; core rp_filter drops +{drops}")
        assert r.received == 0, r.summary()
        assert (
            len(
                re.findall(
                    rf"IP {re.escape(vm.ip)} > {re.escape(str(t.CLIENT_ADDR.ip))}: ICMP echo reply",
                    out,
                )
            )
            == 5
        ), out
        assert drops >= 0.5 * r.sent, f"core dropped only {drops} of {r.sent}"

        # Positive control: the blog's mark sends them back through old; replies arrive.
        baseline.add_return_path("new", tun, mark=True)
        r = lab.probe(vm.ip, 1.5)
        print("tunnel + mark:", r.summary())
        assert r.received >= 0.8 * r.sent, r.summary()
    finally:
        baseline.remove_return_path("new")
        baseline.remove_source_route("old", tun)
        baseline.close_tunnel(tun)
