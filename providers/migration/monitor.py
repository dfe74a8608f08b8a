"""The migration monitor: runs one libvirt migration job and watches it until it ends.

Every POLL_S it reads the job's stats, asks the policy (`policy.decide`) what to do and
does it (raise the max downtime, abort at the timeout), keeps the target's libvirt
connection busy, and prints a progress line every PROGRESS_EVERY_S. Any other way out of
the loop (an error of its own, its logger failing) aborts the job first and waits for its
end, so the VM stays on exactly one host. It takes the domain, a clock, a sleep and a
logger, so tests drive it with a scripted domain and a fake clock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from providers.migration import log as print_line
from providers.migration import policy

POLL_S = 0.5
PROGRESS_EVERY_S = 5.0  # one line per phase change would hide a stall; every 5 s reads well
KEEPALIVE_S = 5.0  # a call on the target's connection while the source copies

Clock = Callable[[], float]
#: Sleep `seconds`, or less when the event (the job's end) is set first.
Sleep = Callable[[threading.Event, float], object]
Log = Callable[[str], None]


def sleep_until_ended(ended: threading.Event, seconds: float) -> None:
    # Not time.sleep: the move's caller waits for the job's end, not for the next poll.
    ended.wait(seconds)


@dataclass(frozen=True)
class Result:
    """How a migration job ended."""

    seconds: float
    domain: Any = None  # the VM on the target, when it moved
    failure: str | None = None  # why not: the abort's reason or the job's error
    monitor_error: Exception | None = None  # the monitor's own error behind `failure`
    downtime_ms: int = 0  # QEMU's, from the completed job's stats
    bytes: int = 0  # memory and disk copied
    postcopy: bool = False  # switched to post-copy (the VM ran on the target from then on)

    def record(self, source: str, target: str) -> dict[str, Any]:
        """The resource's `last_migration` output."""
        return {
            "from": source,
            "to": target,
            "seconds": round(self.seconds, 3),
            "downtime_ms": self.downtime_ms,
            "bytes": self.bytes,
            **({"postcopy": True} if self.postcopy else {}),
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }


class JobStatsReader:
    """Reads the migration job's stats, in a thread of its own once started.

    libvirt serialises queries with the migration's own monitor calls: a `jobStats` can
    wait up to 30 s for the job lock (a 1 MiB/s move went 30.5 s without a progress
    line). The monitor loop must not wait with it: it keeps its timeout, keepalive and
    progress lines going, and says how old the last stats are.
    """

    def __init__(self, dom: Any, clock: Clock, started: float) -> None:
        self._dom = dom
        self._clock = clock
        self._started = started
        self._lock = threading.Lock()
        self._latest: tuple[float, dict[str, Any]] | None = None
        self._error: Exception | None = None
        self._stopped = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, name="jobstats", daemon=True).start()

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                self.read()
            except Exception as err:  # `latest` raises it in the monitor, which aborts
                with self._lock:
                    self._error = err
                return
            self._stopped.wait(POLL_S)

    def read(self) -> None:
        """One query (the thread's; the monitor calls it itself when not started)."""
        import libvirt

        try:
            stats = self._dom.jobStats()
        except libvirt.libvirtError:
            stats = None  # the job is finishing
        if stats:
            with self._lock:
                self._latest = (self._clock(), stats)

    def latest(self) -> tuple[policy.JobSnapshot | None, float]:
        """The newest snapshot (elapsed_s = when it was read) and its age in seconds."""
        with self._lock:
            latest, error = self._latest, self._error
        if error is not None:
            raise error
        if latest is None:
            return None, 0.0
        read_at, stats = latest
        age = self._clock() - read_at
        return policy.JobSnapshot.from_stats(stats, read_at - self._started), age

    def stop(self) -> None:
        self._stopped.set()


class Monitor:
    """Runs `dom.migrate3` in a worker thread and watches it; one monitor per move.

    `stats_thread=False` reads the job's stats in the loop itself, in step with a fake
    clock (tests); a move reads them in a thread of their own (JobStatsReader says why).
    """

    def __init__(
        self,
        name: str,
        dom: Any,
        target_conn: Any,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = sleep_until_ended,
        log: Log = print_line,
        stats_thread: bool = True,
    ) -> None:
        self._name = name
        self._dom = dom
        self._target_conn = target_conn
        self._clock = clock
        self._sleep = sleep
        self._log = log
        self._stats_thread = stats_thread
        self._ended = threading.Event()
        self._outcome: dict[str, Any] = {}
        self._aborted: str | None = None
        self._postcopy = False  # the switch was asked for and libvirt took it
        self._postcopy_refused = False

    def run(
        self,
        params: dict[str, Any],
        flags: int,
        *,
        max_downtime_ms: int,
        timeout_s: float,
        after_start: Callable[[], object] | None = None,
        postcopy: str = "never",
        resuming: bool = False,
    ) -> Result:
        """Start the job, call `after_start` (work to overlap with the copy), watch the
        job until it ends. `postcopy`: the setting, when to switch to post-copy;
        `resuming`: the job resumes a broken post-copy (it is one from the start). An
        error of the monitor's own aborts the job (pauses it, in post-copy) and makes it
        a failed one; a KeyboardInterrupt or the like aborts it and is raised again."""
        started = self._clock()
        self._postcopy = resuming
        threading.Thread(
            target=self._migrate, args=(params, flags), name=f"migrate-{self._name}", daemon=True
        ).start()
        reader = JobStatsReader(self._dom, self._clock, started)
        monitor_error: Exception | None = None
        try:
            if after_start is not None:
                after_start()
            if self._stats_thread:
                reader.start()
            self._watch(reader, started, max_downtime_ms, timeout_s, postcopy)
        except Exception as err:
            if self._abort_and_wait(f"monitoring failed ({type(err).__name__}: {err})"):
                monitor_error = err
        except BaseException:
            self._abort_and_wait("interrupted")
            raise
        finally:
            reader.stop()
        return self._result(started, monitor_error)

    def _migrate(self, params: dict[str, Any], flags: int) -> None:
        try:
            self._outcome["domain"] = self._dom.migrate3(self._target_conn, params, flags)
        except BaseException as err:  # reported by the monitor
            self._outcome["error"] = err
        finally:
            self._ended.set()

    def _watch(
        self,
        reader: JobStatsReader,
        started: float,
        max_downtime_ms: int,
        timeout_s: float,
        postcopy: str = "never",
    ) -> None:
        import libvirt

        downtime = max_downtime_ms
        next_progress = started
        next_keepalive = started + KEEPALIVE_S
        first: policy.JobSnapshot | None = None
        while not self._ended.is_set():
            self._sleep(self._ended, POLL_S)
            if self._ended.is_set():
                break
            now = self._clock()
            if now >= next_keepalive:
                # The target's connection is idle from Prepare to Finish, and nothing
                # reads its SSH channel then: sshd's client-alive checks go unanswered,
                # it drops the connection and the target's libvirtd kills the incoming
                # domain (a 1 MiB/s move failed after ~2 min with "migration of disk
                # vda failed: Input/output error"). A cheap call keeps it serviced.
                next_keepalive = now + KEEPALIVE_S
                with contextlib.suppress(libvirt.libvirtError):
                    self._target_conn.getLibVersion()
            if not self._stats_thread:
                reader.read()
            snapshot, stale_s = reader.latest()
            if snapshot is None:
                continue
            # libvirt updates the mirror's byte counts in chunks: the rate over the
            # whole job so far gives a steadier ETA than the last interval.
            first = first or snapshot
            snapshot = snapshot.with_rate_since(first)
            decision = policy.decide(
                # The timeout counts from now, however old the stats are.
                dataclasses.replace(snapshot, elapsed_s=self._clock() - started),
                max_downtime_ms=max_downtime_ms,
                current_downtime_ms=downtime,
                timeout_s=timeout_s,
                postcopy="never" if self._postcopy_refused else postcopy,
                in_postcopy=self._postcopy,
            )
            if decision.abort and self._aborted is None:
                self._abort(decision.abort)
            elif decision.start_postcopy:
                self._start_postcopy(decision.start_postcopy)
            elif decision.set_downtime_ms:
                downtime = decision.set_downtime_ms
                self._log(
                    f"{self._name}: not converging at pass {snapshot.memory_iteration}: "
                    f"max downtime -> {downtime} ms"
                )
                try:
                    self._dom.migrateSetMaxDowntime(downtime, 0)
                except libvirt.libvirtError as err:
                    self._log(f"{self._name}: could not raise max downtime: {err}")
            if self._clock() >= next_progress:
                self._log(policy.progress_line(self._name, snapshot, stale_s=stale_s))
                next_progress = self._clock() + PROGRESS_EVERY_S

    def _start_postcopy(self, why: str) -> None:
        import libvirt

        self._log(f"{self._name}: switching to post-copy: {why}")
        try:
            self._dom.migrateStartPostCopy(0)
            self._postcopy = True
        except libvirt.libvirtError as err:
            # Pre-copy may be completing already; it goes on as pre-copy.
            self._postcopy_refused = True
            self._log(f"{self._name}: post-copy refused, pre-copy goes on: {err}")

    def _abort(self, reason: str) -> None:
        """Abort the job (its end comes as migrate3's error), whatever the log does. In
        post-copy a job cannot be aborted (the VM runs on the target, its memory partly on
        the source): it is paused instead (VIR_DOMAIN_ABORT_JOB_POSTCOPY), to be resumed."""
        import libvirt

        self._aborted = reason
        try:
            self._log(
                f"{self._name}: {'pausing post-copy' if self._postcopy else 'aborting'}: {reason}"
            )
        finally:
            try:
                if self._postcopy:
                    self._dom.abortJobFlags(libvirt.VIR_DOMAIN_ABORT_JOB_POSTCOPY)
                else:
                    self._dom.abortJob()
            except libvirt.libvirtError as err:
                self._log(f"{self._name}: abort failed: {err}")

    def _abort_and_wait(self, reason: str) -> bool:
        """The loop broke off: abort the job unless it ended (or was aborted), then wait
        for its end, so the VM runs on exactly one host when the monitor returns.
        -> whether this aborted it."""
        aborting = not self._ended.is_set() and self._aborted is None
        if aborting:
            with contextlib.suppress(Exception):  # the log may be what failed
                self._abort(reason)
        while not self._ended.is_set():
            self._sleep(self._ended, POLL_S)
        return aborting

    def _result(self, started: float, monitor_error: Exception | None) -> Result:
        import libvirt

        seconds = self._clock() - started
        if "error" in self._outcome or self._aborted:
            return Result(
                seconds,
                failure=self._aborted or str(self._outcome.get("error")),
                monitor_error=monitor_error,
                postcopy=self._postcopy,
            )
        new_dom = self._outcome["domain"]
        stats = {}
        with contextlib.suppress(libvirt.libvirtError):
            stats = new_dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
        return Result(
            seconds,
            domain=new_dom,
            downtime_ms=int(stats.get("downtime", 0)),
            bytes=int(stats.get("memory_processed", 0)) + int(stats.get("disk_processed", 0)),
            postcopy=self._postcopy,
        )
