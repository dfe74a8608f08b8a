"""Migration policy, and the real monitor loop driven by a scripted libvirt domain on a
fake clock (no libvirt daemon, no waiting), plus a few runs of it in real time."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import libvirt
import pytest

from providers.migration import MIB
from providers.migration.monitor import JobStatsReader, Monitor, Result
from providers.migration.policy import (
    JobSnapshot,
    downtime_for_iteration,
    progress_line,
)

pytestmark = [pytest.mark.unit]

Stats = dict[str, int]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TargetConnection:
    """The target's libvirt connection: the monitor's keepalive calls land here."""

    def __init__(self, error: bool = False) -> None:
        self.keepalives: list[float] = []
        self._error = error
        self.clock: Clock | None = None

    def getLibVersion(self) -> int:
        assert self.clock is not None
        self.keepalives.append(self.clock.now)
        if self._error:
            raise libvirt.libvirtError("connection busy")
        return 9_000_000


class MovedDomain:
    """The domain on the target once migrate3 returned."""

    def __init__(self, completed: Stats) -> None:
        self._completed = completed

    def jobStats(self, flags: int = 0) -> Stats:
        assert flags == libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED
        return self._completed


class ScriptedDomain:
    """A source domain whose migration job follows a script on the fake clock.

    `timeline`: (seconds since the start, job stats, or an exception jobStats raises from
    then on). The job ends `ends_at` seconds in (or at the first poll after abortJob),
    with `error` if given; every call the monitor makes is recorded with its time.
    """

    def __init__(
        self,
        clock: Clock,
        timeline: Sequence[tuple[float, Stats | Exception]] = (),
        *,
        ends_at: float = float("inf"),
        error: Exception | None = None,
        abort_fails: bool = False,
        downtime_fails: bool = False,
        completed: Stats | None = None,
    ) -> None:
        self._clock = clock
        self._t0 = clock.now
        self._timeline = sorted(timeline, key=lambda entry: entry[0])
        self._ends_at = ends_at
        self._error = error
        self._abort_fails = abort_fails
        self._downtime_fails = downtime_fails
        self._completed = completed or {}
        self._release = threading.Event()
        self.aborted = False
        self.downtimes: list[tuple[float, int]] = []
        self.aborts: list[float] = []
        self.migrations = 0

    def elapsed(self) -> float:
        return self._clock.now - self._t0

    def ended(self) -> bool:
        return self.aborted or self.elapsed() >= self._ends_at

    def jobStats(self, flags: int = 0) -> Stats:
        current: Stats | Exception = {}
        for at, entry in self._timeline:
            if at <= self.elapsed():
                current = entry
        if isinstance(current, Exception):
            raise current
        return current

    def migrateSetMaxDowntime(self, downtime_ms: int, flags: int) -> None:
        self.downtimes.append((self.elapsed(), downtime_ms))
        if self._downtime_fails:
            raise libvirt.libvirtError("cannot set max downtime")

    def abortJob(self) -> None:
        self.aborts.append(self.elapsed())
        if self._abort_fails:
            raise libvirt.libvirtError("no job is active on the domain")
        self.aborted = True

    def migrate3(self, conn: Any, params: dict[str, Any], flags: int) -> MovedDomain:
        self.migrations += 1
        assert self._release.wait(60), "the script never ended the job"
        if self.aborted:
            raise libvirt.libvirtError("operation aborted: migration out job: canceled by client")
        if self._error is not None:
            raise self._error
        return MovedDomain(self._completed)

    def release(self) -> None:
        self._release.set()


def _monitor(
    dom: ScriptedDomain,
    clock: Clock,
    *,
    target: TargetConnection | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[Monitor, list[str]]:
    lines: list[str] = []
    target = target or TargetConnection()
    target.clock = clock

    def sleep(ended: threading.Event, seconds: float) -> None:
        clock.now += seconds
        assert dom.elapsed() < 3600, "the job never ended (nobody aborted it?)"
        if dom.ended():
            dom.release()
            assert ended.wait(10)  # the migrate3 thread returns at once

    monitor = Monitor(
        "vm",
        dom,
        target,
        clock=clock,
        sleep=sleep,
        log=log or lines.append,
        stats_thread=False,
    )
    return monitor, lines


def _run(
    dom: ScriptedDomain,
    clock: Clock,
    *,
    max_downtime_ms: int = 100,
    timeout_s: float = 600,
    **kwargs: Any,
) -> tuple[Result, list[str]]:
    monitor, lines = _monitor(dom, clock, **kwargs)
    result = monitor.run({}, 0, max_downtime_ms=max_downtime_ms, timeout_s=timeout_s)
    assert dom.ended()  # whatever happened, the job is over when the monitor returns
    return result, lines


def _stats(iteration: int = 1, remaining_mib: int = 40, total_mib: int = 128) -> Stats:
    return {
        "memory_total": total_mib * MIB,
        "memory_remaining": remaining_mib * MIB,
        "memory_iteration": iteration,
    }


# --- the policy's scenarios, through the real loop ---------------------------------------


def test_converging_migration_changes_nothing() -> None:
    clock = Clock()
    dom = ScriptedDomain(
        clock,
        [(0.5, _stats(1, remaining_mib=90)), (1.0, _stats(2, remaining_mib=10))],
        ends_at=1.5,
        completed={"downtime": 81, "memory_processed": 60 * MIB, "disk_processed": 11 * MIB},
    )
    result, _lines = _run(dom, clock)
    assert dom.downtimes == [] and dom.aborts == []
    assert result.failure is None and isinstance(result.domain, MovedDomain)
    assert (result.seconds, result.downtime_ms, result.bytes) == (1.5, 81, 71 * MIB)


def test_busy_guest_gets_its_downtime_raised_in_steps() -> None:
    clock = Clock()
    timeline = [(0.5 * i, _stats(i, remaining_mib=40)) for i in range(1, 16)]
    dom = ScriptedDomain(clock, timeline, ends_at=8.0)
    result, lines = _run(dom, clock)
    assert result.failure is None
    assert dom.downtimes == [(2.0, 200), (3.0, 400), (4.0, 800), (5.0, 1600), (6.0, 2000)]
    assert "vm: not converging at pass 4: max downtime -> 200 ms" in lines
    assert dom.aborts == []


def test_timeout_aborts_with_what_was_left() -> None:
    clock = Clock()
    dom = ScriptedDomain(clock, [(t, _stats(3, remaining_mib=50)) for t in (1, 5, 10)])
    result, lines = _run(dom, clock, timeout_s=5)
    assert dom.aborts == [5.0]
    aborted = result.failure
    assert aborted is not None and "timeout_s=5" in aborted and "50 MiB" in aborted
    assert f"vm: aborting: {aborted}" in lines
    assert result.domain is None and result.monitor_error is None


# --- the rest of the loop ----------------------------------------------------------------


def test_a_moved_vm_leaves_a_record() -> None:
    clock = Clock()
    dom = ScriptedDomain(
        clock,
        [(0.5, _stats())],
        ends_at=2.0,
        completed={"downtime": 81, "memory_processed": 60 * MIB, "disk_processed": 11 * MIB},
    )
    result, _lines = _run(dom, clock)
    record = result.record("old", "new")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", record.pop("at"))
    assert record == {
        "from": "old",
        "to": "new",
        "seconds": 2.0,
        "downtime_ms": 81,
        "bytes": 71 * MIB,
    }
    assert dom.migrations == 1


def test_progress_every_5_s_and_the_target_kept_busy() -> None:
    clock = Clock()
    target = TargetConnection()
    dom = ScriptedDomain(clock, [(0.5, _stats(remaining_mib=64))], ends_at=12.0)
    _result, lines = _run(dom, clock, target=target)
    progress = [line for line in lines if "migrating (" in line]
    assert [line.split(" s:")[0] for line in progress] == [
        "vm: migrating (memory) 0.5",
        "vm: migrating (memory) 5.5",
        "vm: migrating (memory) 10.5",
    ]
    assert [t - 1000.0 for t in target.keepalives] == [5.0, 10.0]


def test_a_keepalive_libvirt_refuses_changes_nothing() -> None:
    clock = Clock()
    target = TargetConnection(error=True)
    dom = ScriptedDomain(clock, [(0.5, _stats())], ends_at=6.0)
    result, _lines = _run(dom, clock, target=target)
    assert result.failure is None and len(target.keepalives) == 1


def test_old_stats_are_flagged_and_the_timeout_counts_from_now() -> None:
    clock = Clock()
    busy = libvirt.libvirtError("timed out during operation: cannot acquire state change lock")
    dom = ScriptedDomain(clock, [(0.5, _stats(remaining_mib=64)), (1.0, busy)])
    result, lines = _run(dom, clock, timeout_s=10)
    assert any(line.endswith("(libvirt busy, stats 5 s old)") for line in lines)
    assert dom.aborts == [10.0]
    assert result.failure is not None and "timeout_s=10" in result.failure


def test_a_failed_job_is_reported_with_libvirt_s_error() -> None:
    clock = Clock()
    error = libvirt.libvirtError("migration of disk vda failed: Input/output error")
    dom = ScriptedDomain(clock, [(0.5, _stats())], ends_at=2.0, error=error)
    result, _lines = _run(dom, clock)
    assert result.failure == "migration of disk vda failed: Input/output error"
    assert result.seconds == 2.0 and dom.aborts == [] and result.monitor_error is None


def test_an_abort_libvirt_refuses_is_said_and_not_repeated() -> None:
    clock = Clock()
    dom = ScriptedDomain(clock, [(0.5, _stats())], ends_at=4.0, abort_fails=True)
    result, lines = _run(dom, clock, timeout_s=2)
    assert dom.aborts == [2.0]
    assert "vm: abort failed: no job is active on the domain" in lines
    assert result.failure is not None and result.failure.startswith("did not complete")


def test_a_downtime_libvirt_refuses_is_said_and_the_move_goes_on() -> None:
    clock = Clock()
    dom = ScriptedDomain(clock, [(0.5, _stats(4))], ends_at=1.5, downtime_fails=True)
    result, lines = _run(dom, clock)
    assert dom.downtimes == [(0.5, 200)]  # the next step comes with the next passes
    assert "vm: could not raise max downtime: cannot set max downtime" in lines
    assert result.failure is None


# --- every way out of the loop aborts the job --------------------------------------------


def test_reading_job_stats_raising_aborts_the_job() -> None:
    clock = Clock()
    broken = RuntimeError("jobStats returned garbage")
    dom = ScriptedDomain(clock, [(0.5, _stats()), (1.0, broken)])
    result, lines = _run(dom, clock)
    assert dom.aborts == [1.0]
    assert result.failure == "monitoring failed (RuntimeError: jobStats returned garbage)"
    assert result.monitor_error is broken
    assert f"vm: aborting: {result.failure}" in lines


def test_the_logger_raising_aborts_the_job() -> None:
    clock = Clock()
    dom = ScriptedDomain(clock, [(0.5, _stats())])

    def log(line: str) -> None:
        raise BrokenPipeError("stdout closed")

    result, _lines = _run(dom, clock, log=log)
    assert dom.aborts == [0.5]  # at the first progress line
    assert result.failure == "monitoring failed (BrokenPipeError: stdout closed)"


def test_the_logger_raising_on_the_abort_line_still_aborts() -> None:
    clock = Clock()
    dom = ScriptedDomain(clock, [(0.5, _stats())])

    def log(line: str) -> None:
        if "aborting" in line:
            raise BrokenPipeError("stdout closed")

    result, _lines = _run(dom, clock, log=log, timeout_s=2)
    assert dom.aborts == [2.0]  # once: the monitor knows it aborted already
    assert result.failure is not None and "timeout_s=2" in result.failure


def test_work_after_the_start_that_fails_aborts_the_job() -> None:
    clock = Clock()
    dom = ScriptedDomain(clock, [(0.5, _stats())])
    monitor, _lines = _monitor(dom, clock)

    def after_start() -> None:
        raise OSError("router unreachable")

    result = monitor.run({}, 0, max_downtime_ms=100, timeout_s=600, after_start=after_start)
    assert dom.aborts == [0.0] and dom.ended()
    assert result.failure == "monitoring failed (OSError: router unreachable)"


def test_an_interrupt_aborts_the_job_and_is_raised_again() -> None:
    clock = Clock()
    dom = ScriptedDomain(clock, [(0.5, _stats())])
    monitor, lines = _monitor(dom, clock)

    def after_start() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        monitor.run({}, 0, max_downtime_ms=100, timeout_s=600, after_start=after_start)
    assert dom.aborts == [0.0] and dom.ended()
    assert lines == ["vm: aborting: interrupted"]


# --- in real time, with the stats read in their own thread -------------------------------


class QuickDomain:
    """A real-time job: ends `seconds` after it started, or soon after abortJob."""

    def __init__(self, seconds: float, stats_error: Exception | None = None) -> None:
        self._seconds = seconds
        self._stats_error = stats_error
        self._aborted = threading.Event()
        self.aborts = 0

    def jobStats(self, flags: int = 0) -> Stats:
        if flags == libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED:
            return {"downtime": 12}
        if self._stats_error is not None:
            raise self._stats_error
        return _stats()

    def abortJob(self) -> None:
        self.aborts += 1
        self._aborted.set()

    def migrate3(self, conn: Any, params: dict[str, Any], flags: int) -> QuickDomain:
        if self._aborted.wait(self._seconds):
            raise libvirt.libvirtError("operation aborted")
        return self


def test_the_monitor_returns_when_the_job_ends_not_at_the_next_poll() -> None:
    lines: list[str] = []
    started = time.monotonic()
    result = Monitor("vm", QuickDomain(0.05), TargetConnection(), log=lines.append).run(
        {}, 0, max_downtime_ms=100, timeout_s=600
    )
    assert time.monotonic() - started < 0.4  # a poll is 0.5 s
    assert result.failure is None and result.downtime_ms == 12


def test_a_stats_thread_that_fails_aborts_the_job() -> None:
    dom = QuickDomain(10, stats_error=RuntimeError("jobStats broke"))
    lines: list[str] = []
    result = Monitor("vm", dom, TargetConnection(), log=lines.append).run(
        {}, 0, max_downtime_ms=100, timeout_s=600
    )
    assert dom.aborts == 1
    assert result.failure == "monitoring failed (RuntimeError: jobStats broke)"


def test_the_stats_thread_keeps_the_newest_and_says_how_old() -> None:
    clock = Clock()
    reader = JobStatsReader(QuickDomain(30), clock, started=999.0)
    assert reader.latest() == (None, 0.0)
    reader.start()
    deadline = time.monotonic() + 5
    while reader.latest()[0] is None and time.monotonic() < deadline:
        time.sleep(0.01)
    reader.stop()
    clock.now += 2.5
    snapshot, age = reader.latest()
    assert snapshot is not None and snapshot.elapsed_s == 1.0 and age == 2.5
    assert snapshot.memory_remaining == 40 * MIB


# --- the policy on its own ---------------------------------------------------------------


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


def test_the_loop_derives_the_rate_over_the_whole_job() -> None:
    clock = Clock()
    disk = {"disk_total": 320 * MIB}
    dom = ScriptedDomain(
        clock,
        [
            (0.5, {**disk, "disk_remaining": 300 * MIB, "disk_processed": 20 * MIB}),
            (5.5, {**disk, "disk_remaining": 290 * MIB, "disk_processed": 30 * MIB}),
        ],
        ends_at=6.0,
    )
    _result, lines = _run(dom, clock)
    assert lines[-1].endswith("disk 290/320 MiB left, 2 MiB/s, ETA 145.0 s")


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
