"""Migration policy against scripted job-stat timelines (no libvirt, no clock)."""

from __future__ import annotations

import pytest

from providers.plans.domain import (
    DiskCheck,
    DomainSpec,
    describe_move,
    domain_xml,
    plan_target_disks,
)
from providers.plans.migration import (
    MIB,
    JobSnapshot,
    decide,
    downtime_for_iteration,
    progress_line,
)

pytestmark = [pytest.mark.unit]


def _run(timeline: list[JobSnapshot], max_downtime_ms: int = 100, timeout_s: float = 600):
    """Replay a timeline the way the monitor loop does; -> (downtime set, abort reason)."""
    downtime, settings = max_downtime_ms, list[tuple[float, int]]()
    for snapshot in timeline:
        decision = decide(
            snapshot,
            max_downtime_ms=max_downtime_ms,
            current_downtime_ms=downtime,
            timeout_s=timeout_s,
        )
        if decision.abort:
            return settings, decision.abort
        if decision.set_downtime_ms:
            downtime = decision.set_downtime_ms
            settings.append((snapshot.elapsed_s, downtime))
    return settings, None


def test_converging_migration_changes_nothing() -> None:
    timeline = [
        JobSnapshot(0.5, memory_total=128 * MIB, memory_remaining=90 * MIB, memory_iteration=1),
        JobSnapshot(1.0, memory_total=128 * MIB, memory_remaining=10 * MIB, memory_iteration=2),
    ]
    assert _run(timeline) == ([], None)


def test_busy_guest_gets_its_downtime_raised_in_steps() -> None:
    timeline = [
        JobSnapshot(0.5 * i, memory_iteration=i, memory_remaining=40 * MIB) for i in range(1, 16)
    ]
    settings, aborted = _run(timeline)
    assert aborted is None
    assert [ms for _, ms in settings] == [200, 400, 800, 1600, 2000]


def test_timeout_aborts_with_what_was_left() -> None:
    timeline = [JobSnapshot(t, memory_remaining=50 * MIB, memory_iteration=3) for t in (1, 5, 10)]
    _settings, aborted = _run(timeline, timeout_s=5)
    assert aborted is not None and "timeout_s=5" in aborted and "50 MiB" in aborted


def test_downtime_never_below_the_configured_bound_and_capped() -> None:
    assert downtime_for_iteration(100, 0) == 100
    assert downtime_for_iteration(500, 9) == 2000
    assert downtime_for_iteration(5000, 9) == 5000


def test_progress_line_reads_like_a_person_wrote_it() -> None:
    line = progress_line(
        "blog",
        JobSnapshot(1.5, memory_total=128 * MIB, memory_remaining=64 * MIB, bytes_per_s=128 * MIB),
    )
    assert line == (
        "blog: migrating (memory) 1.5 s: RAM 64/128 MiB left, disk 0/0 MiB left, "
        "128 MiB/s, ETA 0.5 s"
    )


@pytest.mark.parametrize(
    ("check", "expected"),
    [
        (DiskCheck("/d.img", 64 * MIB, 64 * MIB, None), ([], {}, [])),
        (DiskCheck("/d.img", 64 * MIB, None, 100 * MIB), (["/d.img"], {}, [])),
        (DiskCheck("/d.img", 64 * MIB, 128 * MIB, None), ([], {"/d.img": 64 * MIB}, [])),
    ],
)
def test_target_disks(check: DiskCheck, expected: tuple) -> None:
    assert plan_target_disks([check]) == expected


@pytest.mark.parametrize(
    ("check", "problem"),
    [
        (DiskCheck("/d.img", 64 * MIB, 32 * MIB, None), "smaller than the source"),
        (DiskCheck("/d.img", 64 * MIB, None, 10 * MIB), "10 MiB free"),
        (DiskCheck("/d.img", 64 * MIB, None, None), "directory does not exist"),
    ],
)
def test_target_disk_problems(check: DiskCheck, problem: str) -> None:
    assert problem in plan_target_disks([check])[2][0]


def _spec() -> DomainSpec:
    return DomainSpec.from_props(
        {
            "name": "blog",
            "memory_mib": 128,
            "vif": "vif0",
            "disks": [{"path": "/var/lib/libvirt/images/blog.img", "size_mib": 64}],
        }
    )


def test_bigger_target_disk_gets_a_storage_slice() -> None:
    xml = domain_xml(_spec(), {"/var/lib/libvirt/images/blog.img": 64 * MIB})
    assert f"<slice type='storage' offset='0' size='{64 * MIB}'/>" in xml
    assert '<target dev="vif0"/>' in xml
    assert '<script path="/etc/libvirt/scripts/vif-route"/>' in xml


def test_same_vm_same_mac_and_uuid_everywhere() -> None:
    assert domain_xml(_spec()) == domain_xml(_spec())
    assert _spec().mac.startswith("52:54:00:")


def test_preview_sentence() -> None:
    assert describe_move("blog", "old", "new", 64, 128, 100) == (
        "blog: live-migrate old -> new: copy 64 MiB disk + 128 MiB RAM, max downtime 100 ms"
    )


def test_rate_of_the_disk_mirror_is_derived_from_bytes_copied() -> None:
    # libvirt reports disk_bps 0 while the NBD mirror runs: the rate comes from the delta.
    first = JobSnapshot(
        10.0, disk_total=320 * MIB, disk_remaining=300 * MIB, disk_processed=20 * MIB
    )
    second = JobSnapshot(
        12.0, disk_total=320 * MIB, disk_remaining=298 * MIB, disk_processed=22 * MIB
    )
    assert second.with_rate_since(first).bytes_per_s == MIB
    assert "1 MiB/s, ETA 298.0 s" in progress_line("vm", second.with_rate_since(first))
    # A figure libvirt does report is kept; no previous snapshot or no progress: unchanged.
    reported = JobSnapshot(12.0, disk_processed=22 * MIB, bytes_per_s=5 * MIB)
    assert reported.with_rate_since(first).bytes_per_s == 5 * MIB
    assert second.with_rate_since(None) == second
    assert first.with_rate_since(first) == first


def test_progress_line_before_libvirt_has_figures() -> None:
    assert progress_line("vm", JobSnapshot(0.0)) == "vm: migrating (starting) 0.0 s"
    assert progress_line("vm", JobSnapshot(31.0), stale_s=30.5) == (
        "vm: migrating (starting) 31.0 s (libvirt busy, stats 30 s old)"
    )
    # The disk copied, the memory stream not begun yet: that is the memory phase.
    done = JobSnapshot(300.0, disk_total=64 * MIB)
    assert progress_line("vm", done).startswith("vm: migrating (memory) 300.0 s: RAM 0/0")


def test_progress_line_says_when_libvirt_is_busy() -> None:
    snapshot = JobSnapshot(10.0, disk_total=64 * MIB, disk_remaining=32 * MIB)
    assert "libvirt busy" not in progress_line("vm", snapshot, stale_s=1.0)
    assert progress_line("vm", snapshot, stale_s=12.4).endswith("(libvirt busy, stats 12 s old)")
