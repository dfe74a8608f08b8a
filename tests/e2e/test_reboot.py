"""A host reboot is not an outage (issue 19): each host of a stack is power-cut and booted
again (`lab reboot`: every process ends, its network state and /run are gone, then its
OS config, its /etc/sysctl.d, glidepath's boot step, sshd and libvirtd, which starts the
domains set to autostart). Nobody runs `pulumi up`.

One stack, two VMs (`rb-a` vif1, `rb-b` vif2), both on old at first (old is the upstream;
new carries the egress path: table, rule, default route via the tunnel, mangle mark):
1. steady state: reboot new, then old (both VMs on it);
2. in a move's window: `rb-b` moves to new while `rb-a` stays on old, so the prefix stays
   on old and `rb-b`'s traffic goes through the tunnel both ways (its egress marked on
   new); reboot new (the VM that moved), then old (the upstream, the tunnel's keeper).
After each reboot: both VMs answer the client again, no guest write from before the power
cut is missing, and `pulumi refresh` finds nothing changed. Each reboot's outage (the
probe's longest gap, per VM) is printed as `reboot: ...` lines (docs/recovery.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from lab import guest, reboot
from lab import topology as t
from tests.e2e.conftest import GeneratedStack, lab_vm
from tests.e2e.test_preflight import running_on, wait_answers

pytestmark = [pytest.mark.e2e, pytest.mark.lab, pytest.mark.engine]

VMS = {"rb-a": (1, "203.0.113.3"), "rb-b": (2, "203.0.113.4")}
#: Bounds: a rebooted host's VM boots in ~5 s (TCG); the tunnel's keeper retries every <=5 s.
BACK_WITHIN_S = 90.0
PROBE_S = 120.0


def _disk(vm: str) -> str:
    return f"/var/lib/libvirt/images/{vm}.img"


def _records(host: str, vm: str) -> dict[int, guest.Record]:
    """The guest's write records on its disk, by sector (seq)."""
    return {r.seq: r for r in guest.read_records(host, _disk(vm))}


def _carrier(lab: Any, host: str) -> bool:
    link = lab.run(host, ["ip", "-o", "link", "show", t.TUNNEL_DEV], check=False, timeout=30)
    return "LOWER_UP" in link.stdout


def _wait(done: Callable[[], bool], what: str, timeout: float = BACK_WITHIN_S) -> float:
    start = time.monotonic()
    while not done():
        assert time.monotonic() - start < timeout, f"{what}: not within {timeout:.0f} s"
        time.sleep(0.25)
    return time.monotonic() - start


def _reboot(lab: Any, stack: GeneratedStack, host: str, case: str) -> dict[str, float]:
    """Reboot `host` with both VMs probed; -> each VM's outage (ms). Checks the writes,
    that both answer again, and that a refresh finds nothing changed."""
    where = {vm: running_on(lab, vm) for vm in VMS}
    assert all(len(hosts) == 1 for hosts in where.values()), where
    here = [vm for vm, hosts in where.items() if hosts == [host]]
    probes = {vm: lab.start_probe(ip, PROBE_S) for vm, (_vif, ip) in VMS.items()}
    time.sleep(1.0)
    before = {vm: _records(host, vm) for vm in here}
    off = reboot.power_off(host)
    try:
        after = {vm: _records(host, vm) for vm in here}
    finally:
        # Booted whatever the check finds: a host left off would fail every later test.
        booted = reboot.boot(off)
    for vm in here:
        # Every write the guest made before the power cut is on its disk, none missing.
        lost = guest.lost_writes(before[vm], after[vm])
        on_disk = [after[vm].get(record.seq) for record in lost[:5]]
        assert not lost, f"{vm}: writes lost: {lost[:5]}; those sectors now: {on_disk}"
        assert guest.sequence_gaps(sorted(after[vm])) == [], vm
    print(booted.restore_output)
    # Without `pulumi up`: the VMs run where they ran, and answer again.
    running_s = _wait(
        lambda: all(running_on(lab, vm) == where[vm] for vm in VMS), "VMs running again"
    )
    for _vif, ip in VMS.values():
        wait_answers(lab, ip, BACK_WITHIN_S)
    _wait(lambda: _carrier(lab, "old") and _carrier(lab, "new"), "tunnel back")
    time.sleep(1.0)
    outage = {}
    for vm, running in probes.items():
        result = running.stop()
        print(result.summary())
        assert result.silent_tail_ms < 1000, result.summary()
        outage[vm] = result.longest_gap_ms
    print(
        f"reboot: {case}: {host} (off {off.seconds} s, booted in {booted.seconds} s, "
        f"its VMs running {running_s:.1f} s later); outage "
        + ", ".join(f"{vm} on {where[vm][0]} {ms:.0f} ms" for vm, ms in outage.items())
    )
    stack.refresh()
    assert stack.changes() == [], stack.changes()
    return outage


def test_each_host_reboots_without_pulumi_up_steady_and_mid_move(
    lab: Any, generated_stacks: Callable[[str, dict[str, dict[str, Any]]], GeneratedStack]
) -> None:
    vms = {vm: lab_vm(vm, vif, "old") for vm, (vif, _ip) in VMS.items()}
    stack = generated_stacks("reboot", vms)
    assert stack.up().summary.result == "succeeded"
    for _vif, ip in VMS.values():
        wait_answers(lab, ip)
    for vm in VMS:
        autostart = lab.run("old", ["virsh", "dominfo", vm], timeout=30).stdout
        assert "Autostart:      enable" in autostart, autostart

    # 1. Steady state: every VM on old, the upstream.
    _reboot(lab, stack, "new", "steady")
    _reboot(lab, stack, "old", "steady")

    # 2. A move's window: rb-b on new, its traffic through the tunnel and old.
    stack.move("rb-b", "new")
    assert stack.up().summary.result == "succeeded"
    assert running_on(lab, "rb-b") == ["new"]
    # It autostarts where it runs, never where it was.
    assert "Autostart:      enable" in lab.run("new", ["virsh", "dominfo", "rb-b"]).stdout
    assert "rb-b" not in lab.run("old", ["virsh", "list", "--all", "--name"]).stdout.split()
    _reboot(lab, stack, "new", "mid-move")
    _reboot(lab, stack, "old", "mid-move")

    stack.preview()
    assert stack.changes() == [], stack.changes()

    # Removing a resource removes its persisted form: rb-b back on old, its route through
    # the tunnel goes, and with it its record; a destroy leaves no record and no sysctl file.
    route = "route-254-203.0.113.4_32-100.json"
    assert route in _boot_records(lab, "old")
    stack.move("rb-b", "old")
    assert stack.up().summary.result == "succeeded"
    assert route not in _boot_records(lab, "old")
    stack.stack.destroy(on_output=print, color="never")
    for host in ("old", "new"):
        assert _boot_records(lab, host) == [], host
        sysctl_d = lab.run(host, ["ls", "-A", "/etc/sysctl.d"], timeout=30).stdout.split()
        assert [f for f in sysctl_d if "glidepath" in f] == [], sysctl_d


def _boot_records(lab: Any, host: str) -> list[str]:
    shown = lab.run(host, ["ls", "-A", "/etc/glidepath/boot.d"], check=False, timeout=30)
    return shown.stdout.split()
