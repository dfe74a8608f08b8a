"""Pure parts of the lab: address plan, generated files, XML, parsers, gap maths."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import xml.etree.ElementTree as ET  # our own generated XML, not untrusted input
from pathlib import Path

import pytest

from lab import baseline, config, guest, lifecycle
from lab import topology as t
from lab.probe import ProbeResult

pytestmark = pytest.mark.unit


def test_host_names_and_addresses() -> None:
    assert t.host_names(2) == ("old", "new")
    assert t.host_names(4) == ("old", "new", "h3", "h4")
    with pytest.raises(ValueError):
        t.host_names(9)
    assert str(t.OLD.address) == "198.18.1.2" and str(t.NEW.address) == "198.18.2.2"
    assert str(t.hypervisor("h5").gateway) == "198.18.5.1/24"
    assert t.NEW.libvirt_uri == "qemu+ssh://root@198.18.2.2/system"
    assert str(t.vm_ip(0)) == "203.0.113.2" and str(t.vm_ip(5)) == "203.0.113.7"
    assert all(t.vm_ip(i) in t.PREFIX for i in range(t.VIF_COUNT))


def test_host_path_maps_bind_mounts() -> None:
    assert (
        t.host_path("old", "/var/lib/libvirt/images/vm1.img")
        == t.STATE_DIR / "hosts/old/var-lib-libvirt/images/vm1.img"
    )
    assert t.host_path("new", "/etc/iproute2/rt_tables") == t.STATE_DIR / "hosts/new/rt_tables"
    # glidepath's owners' files are per host; the lab's own state dir is not a host's.
    assert (
        t.host_path("old", "/var/lib/glidepath/owners/sysctl.net.ipv4.ip_forward")
        == t.STATE_DIR / "hosts/old/var-lib-glidepath/owners/sysctl.net.ipv4.ip_forward"
    )
    assert t.host_path("old", t.CLIENT_KEY) == t.CLIENT_KEY
    assert t.host_path("old", "/var/cache/glidepath-lab/guest/vmlinuz") == t.GUEST_DIR / "vmlinuz"


def test_a_disk_s_bytes_are_in_its_file_or_under_its_lab_volume() -> None:
    assert t.disk_file("old", "/var/lib/libvirt/images/vm1.img") == t.host_path(
        "old", "/var/lib/libvirt/images/vm1.img"
    )
    # Each host's /dev/vg0/blk is its own loop device, over a file of its own.
    assert t.disk_file("new", "/dev/vg0/blk") == t.STATE_DIR / "hosts/new/volumes/vg0/blk.img"
    with pytest.raises(ValueError, match="a lab volume is /dev/<vg>/<lv>"):
        t.disk_file("old", "/dev/loop3")


def test_loop_devices_are_found_by_their_file_never_by_number(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ours = str(t.STATE_DIR / "hosts/old/volumes/vg0/blk.img")
    listed = {
        "loopdevices": [
            {"name": "/dev/loop0", "back-file": "/srv/someone-else.img"},
            {"name": "/dev/loop3", "back-file": ours},
            {"name": "/dev/loop4", "back-file": f"{ours} (deleted)"},
            {"name": "/dev/loop5", "back-file": None},
        ]
    }
    ran: list[list[str]] = []

    def sh(argv: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        ran.append(argv)
        return subprocess.CompletedProcess(argv, 0, json.dumps(listed), "")

    monkeypatch.setattr(lifecycle, "sh", sh)
    assert lifecycle.loop_devices([ours]) == {"/dev/loop3": ours, "/dev/loop4": ours}
    assert ran == [["losetup", "--json", "--list"]]
    assert lifecycle.loop_devices([]) == {}  # a lab without volumes asks nothing
    assert len(ran) == 1


def test_in_lab_rejects_real_addresses() -> None:
    assert t.in_lab("203.0.113.2") and t.in_lab("198.18.2.2") and t.in_lab("198.51.100.2")
    for real in ("192.0.2.1", "10.255.255.53", "8.8.8.8", "127.0.0.1"):
        assert not t.in_lab(real)


def test_vif_route_script_is_the_blogs_case_statement() -> None:
    s = config.vif_route_script()
    assert s.startswith("#!/bin/sh\n")
    assert 'vif0)\n        ip route add 203.0.113.2 dev "$1"' in s
    assert 'vif5)\n        ip route add 203.0.113.7 dev "$1"' in s
    assert "vif6)" not in s
    assert "proxy_arp" in s and "proxy_delay" in s
    subprocess.run(["sh", "-n"], input=s, text=True, check=True)


def test_libvirt_configs_differ_per_host() -> None:
    assert config.host_uuid("old") != config.host_uuid("new")
    assert config.host_uuid("old") == config.host_uuid("old")
    q = config.qemu_conf("198.18.2.2")
    assert 'migration_host = "198.18.2.2"' in q and 'security_driver = "none"' in q
    assert "PermitTunnel yes" in config.sshd_config(
        "198.18.1.2", t.STATE_DIR / "k", t.STATE_DIR / "p", ".ssh/ak"
    )


def test_domain_xml_is_routed_ethernet_with_direct_kernel_boot() -> None:
    vm = guest.VmSpec("vm1", vif=1)
    root = ET.fromstring(guest.domain_xml(vm))  # noqa: S314
    assert root.get("type") == "qemu"
    assert root.findtext("os/kernel") == str(guest.KERNEL)
    assert "gp.ip=203.0.113.3" in (root.findtext("os/cmdline") or "")
    iface = root.find("devices/interface")
    assert iface is not None and iface.get("type") == "ethernet"
    assert iface.find("script").get("path") == "/etc/libvirt/scripts/vif-route"  # type: ignore[union-attr]
    assert iface.find("target").get("dev") == "vif1"  # type: ignore[union-attr]
    assert root.find("devices/disk/source").get("file") == "/var/lib/libvirt/images/vm1.img"  # type: ignore[union-attr]
    kvm = ET.fromstring(guest.domain_xml(vm, domain_type="kvm"))  # noqa: S314
    assert kvm.get("type") == "kvm"
    with pytest.raises(ValueError):
        guest.domain_xml(vm, domain_type="xen")


def _disk(seqs: list[int], size: int = 64) -> bytes:
    data = bytearray(size * guest.RECORD_SIZE)
    for s in seqs:
        rec = f"GPSEQ {s} 1700000000 {s * 0.2:.2f} vm1\n".encode()
        data[s * 512 : s * 512 + len(rec)] = rec
    return bytes(data)


def test_parse_records_and_gaps() -> None:
    recs = guest.parse_records(_disk(list(range(10))))
    assert [r.seq for r in recs] == list(range(10)) and recs[0].name == "vm1"
    assert guest.sequence_gaps([r.seq for r in recs]) == []
    holed = [r.seq for r in guest.parse_records(_disk([0, 1, 2, 5, 6]))]
    assert holed == [0, 1, 2, 5, 6]
    assert guest.sequence_gaps(holed) == [(3, 4)]
    assert guest.sequence_gaps([1, 2]) == [(0, 0)]
    assert guest.sequence_gaps([0, 1, 1]) == [(1, 1)]


def test_a_write_is_lost_unless_it_is_on_disk_or_the_guest_wrote_its_sector_again() -> None:
    def rec(seq: int, epoch: int, uptime: float) -> guest.Record:
        return guest.Record(seq, epoch, uptime, "vm1")

    # Sector 1 still holds an earlier boot's record when read; then the rebooted guest's
    # writer, starting over at 0, writes seq 1 again: that is not a lost write.
    before = {0: rec(0, 1000, 4.2), 1: rec(1, 950, 4.4), 2: rec(2, 950, 4.7)}
    after = {0: rec(0, 1000, 4.2), 1: rec(1, 1001, 4.5), 2: rec(2, 950, 4.7)}
    assert guest.lost_writes(before, after) == []
    # Gone, or replaced by an older or same-second record: lost.
    assert guest.lost_writes(before, {0: before[0], 2: before[2]}) == [before[1]]
    same_second = {**after, 0: rec(0, 1000, 4.3)}
    assert guest.lost_writes(before, same_second) == [before[0]]


def test_console_trouble_names_a_broken_guest_and_nothing_else() -> None:
    console = (
        "[   12.100001] virtio_net virtio0: output.0:id 3 is not a head!\n"
        "GP-READY name=move2 ip=203.0.113.2\n"
        "[    0.004000] Calibrating delay loop (skipped), value calculated using timer\n"
        "[   30.2] list_del corruption. prev->next should be ffff8880\n"
        "[   31.0] watchdog: BUG: soft lockup - CPU#0 stuck for 26s!\n"
        "[    8.0] IPv6: ADDRCONF(NETDEV_CHANGE): eth0: link becomes ready\n"
    )
    assert guest.trouble(console) == [
        "[   12.100001] virtio_net virtio0: output.0:id 3 is not a head!",
        "[    0.004000] Calibrating delay loop (skipped), value calculated using timer",
        "[   30.2] list_del corruption. prev->next should be ffff8880",
        "[   31.0] watchdog: BUG: soft lockup - CPU#0 stuck for 26s!",
    ]
    assert guest.trouble("GP-READY name=blog ip=203.0.113.2\n") == []


def test_trouble_since_reads_only_what_each_console_printed_after_the_offsets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        guest, "console_log", lambda host, name: tmp_path / host / f"{name}-console.log"
    )
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    booted = "[    0.004000] Calibrating delay loop (skipped)\nGP-READY name=flt\n"
    (tmp_path / "old" / "flt-console.log").write_text(booted)
    (tmp_path / "new" / "other-console.log").write_text(booted)
    offsets = guest.console_offsets(["old", "new"])
    assert guest.trouble_since(offsets, ["old", "new"]) == {}
    with (tmp_path / "old" / "flt-console.log").open("a") as log:
        log.write("[   30.2] list_del corruption. prev->next should be ffff8880\n")
    # A log that appeared since is read from its start; one started afresh, likewise.
    (tmp_path / "new" / "flt-console.log").write_text("Kernel panic - not syncing\n")
    (tmp_path / "new" / "other-console.log").write_text("BUG: oops\n")
    assert guest.trouble_since(offsets, ["old", "new"]) == {
        tmp_path / "old" / "flt-console.log": [
            "[   30.2] list_del corruption. prev->next should be ffff8880"
        ],
        tmp_path / "new" / "flt-console.log": ["Kernel panic - not syncing"],
        tmp_path / "new" / "other-console.log": ["BUG: oops"],
    }


def test_initramfs_is_valid_newc() -> None:
    img = guest.build_initramfs(guest._kernel_version())
    names = (
        subprocess.run(["cpio", "-t", "--quiet"], input=img, capture_output=True, check=True)
        .stdout.decode()
        .split()
    )
    assert "init" in names and "bin/busybox" in names and "dev/console" in names
    assert all(f"lib/modules/{m}.ko" in names for m in guest.VIRTIO_MODULES)


def test_probe_gaps_count_silence_at_the_end() -> None:
    replies = [(i, 0.01 * i) for i in range(100)] + [(i, 0.01 * i) for i in range(130, 200)]
    r = ProbeResult("203.0.113.2", 0.01, 2.0, 200, replies)
    assert r.longest_gap_ms == pytest.approx(310, abs=1)
    assert r.longest_gap_at_s == pytest.approx(0.99)
    hung = ProbeResult("203.0.113.2", 0.01, 5.0, 500, replies)
    assert hung.silent_tail_ms == pytest.approx(3010, abs=1) and "NO REPLIES" in hung.summary()
    none = ProbeResult("203.0.113.2", 0.01, 1.0, 100, [])
    assert none.longest_gap_ms == pytest.approx(1000)


def test_clashes_found_in_addresses_routes_and_resolvers() -> None:
    addrs = [
        {
            "ifname": "eth0",
            "addr_info": [{"family": "inet", "local": "192.0.2.2", "prefixlen": 24}],
        },
        {
            "ifname": "eth1",
            "addr_info": [{"family": "inet", "local": "198.19.4.1", "prefixlen": 16}],
        },
    ]
    routes = [
        {"dst": "default", "dev": "eth0"},
        {"dst": "203.0.113.0/25", "dev": "eth0"},
        {"dst": "198.18.0.0/15", "dev": "glab0"},
    ]
    found = lifecycle.clashes_in(
        addrs, routes, "nameserver 10.255.255.53\nnameserver 198.51.100.9\n", own_link="glab0"
    )
    assert len(found) == 3
    assert any("198.19.4.1/16 on eth1" in f for f in found)
    assert any("route 203.0.113.0/25" in f for f in found)
    assert any("resolver 198.51.100.9" in f for f in found)
    ok = lifecycle.clashes_in(addrs[:1], routes[:1], "nameserver 10.255.255.53\n")
    assert ok == []


def test_jobinfo_parser() -> None:
    info = baseline.parse_jobinfo(
        "Job type:         Completed\nTotal downtime:   159          ms\n"
    )
    assert info["Total downtime"] == "159          ms"
    assert baseline.jobinfo_ms(info["Total downtime"]) == 159.0


def test_lab_ranges_avoid_this_machines_networks() -> None:
    for net in ("192.0.2.0/24", "10.0.0.0/8"):
        assert not any(r.overlaps(ipaddress.ip_network(net)) for r in t.LAB_RANGES)


def test_error_lines_pick_what_failed_out_of_an_up() -> None:
    from lab.stacks import LabStack

    handle = LabStack(stack=None)  # type: ignore[arg-type]  # only its output is read
    handle.output = [
        "Updating (e2e-faults):",
        " ~  pulumi-python:dynamic/vm:VmPlacement flt **updating failed** [diff: ~host]; "
        "error: Traceback (most recent call last):",
        "    pulumi:pulumi:Stack glidepath-e2e-faults running flt: migrating (disk) 5.0 s",
        '      File "/p/providers/vm_placement.py", line 401, in update',
        "    providers.upstream.CutoverError: net0: after the switch to old, these VMs do "
        "not answer through the provider's network: 203.0.113.2.",
        "    error: update failed",
        "Resources:",
        "    2 errored",
    ]
    assert handle.error_lines() == [
        "~  pulumi-python:dynamic/vm:VmPlacement flt **updating failed** [diff: ~host]; "
        "error: Traceback (most recent call last):",
        "providers.upstream.CutoverError: net0: after the switch to old, these VMs do not "
        "answer through the provider's network: 203.0.113.2.",
        "error: update failed",
    ]
