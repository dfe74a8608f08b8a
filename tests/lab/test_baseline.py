"""The blog's procedure by hand (the baseline glidepath is measured against)."""

from __future__ import annotations

import time

import pytest

from lab import baseline, guest
from lab.fixtures import LabHandle, VmFactory

pytestmark = pytest.mark.lab


def test_hand_migration_old_to_new(lab: LabHandle, lab_vms: VmFactory) -> None:
    vm = lab_vms("old", "vm-hand", vif=0)
    probe = lab.start_probe(vm.ip, 60.0, http=False)
    time.sleep(1.0)
    before = guest.read_sequence("old", vm.disk_path)
    m = baseline.hand_migrate(vm.name, "old", "new")
    done = time.time()
    time.sleep(2.0)
    r = probe.stop()
    after = guest.read_sequence("new", vm.disk_path)

    moved_at = done - r.started_at
    print(
        f"\nhand migration: virsh migrate {m.migrate_s:.2f} s, "
        f"libvirt downtime {m.libvirt_downtime_ms} ms, "
        f"first direct packet {m.first_direct_packet_s} s after the switch, total {m.total_s:.2f} s"
    )
    print(r.summary())
    t_mig = m.migrate_started_at - r.started_at
    print(
        f"timeline (s after probe start): migrate {t_mig:.2f}..{t_mig + m.migrate_s:.2f}, "
        f"core switch {m.switched_at - r.started_at:.2f}; gaps over 50 ms (start s, ms): "
        f"{[(round(a, 2), round(ms)) for a, ms in r.gaps(50)]}"
    )
    gaps = guest.sequence_gaps(after)
    print(f"sequence: {len(before)} records before, {len(after)} after, gaps {gaps}")

    if r.replies_after(moved_at) == 0:
        pytest.fail(
            f"no replies after the move (t={moved_at:.1f} s): guest hung? "
            f"(TCG, about 1 in 30 moves) {r.summary()}"
        )
    assert lab.where(vm.name) == ["new"]
    assert baseline.core_route() == "new"
    assert m.first_direct_packet_s is not None, (
        "no packet for the prefix arrived directly on new's br0"
    )
    assert m.libvirt_downtime_ms is not None and m.libvirt_downtime_ms > 0
    # The blog's claim: under a second. One gap at the switchover, replies before and after.
    assert r.longest_gap_ms < 1000, r.summary()
    assert r.silent_tail_ms < 500, r.summary()
    # Nothing lost on disk: every record from old is on new, and the writer kept going.
    assert before and after[: len(before)] == before
    assert guest.sequence_gaps(after) == []
    assert len(after) >= len(before) + 5
    # The temporary path is gone: no mark, no vm-out rule, no tunnel.
    assert (
        "MARK" not in lab.run("new", ["iptables", "-w", "-t", "mangle", "-S", "PREROUTING"]).stdout
    )
    assert "vm-out" not in lab.run("new", ["ip", "rule", "show"]).stdout
    assert lab.run("old", ["ip", "link", "show", "tun2"], check=False).returncode != 0
