"""Migration policy, pure: what to do at each poll of a running migration job.

The monitor (providers/migration/monitor.py) feeds `decide` a snapshot of libvirt's job
stats every ~0.5 s and acts on the answer; tests feed scripted timelines instead.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from providers.migration import MIB

# Raise the allowed downtime when the guest dirties memory faster than we copy it: from
# the 4th memory pass on, double the bound every 2 passes, up to the ceiling. (A guest
# that dirties 200 KiB/s behind a 1 MiB/s limit needs about 1 s: 8x was not enough.)
DOWNTIME_FIRST_STEP_ITERATION = 4
DOWNTIME_STEP_EVERY = 2
DOWNTIME_CEILING_MS = 2000
# Say so in the progress line when libvirt has not answered a stats query for this long.
STALE_NOTE_S = 3.0
# `postcopy: if_stuck`: pre-copy "does not converge" when it is still copying at the pass
# where the pause would first be raised: switch to post-copy there instead.
POSTCOPY_STUCK_ITERATION = DOWNTIME_FIRST_STEP_ITERATION


@dataclass(frozen=True)
class JobSnapshot:
    """The job stats fields the policy reads (libvirt's VIR_DOMAIN_JOB_* names)."""

    elapsed_s: float
    memory_total: int = 0
    memory_remaining: int = 0
    memory_processed: int = 0
    memory_iteration: int = 0
    disk_total: int = 0
    disk_remaining: int = 0
    disk_processed: int = 0
    bytes_per_s: float = 0.0

    @staticmethod
    def from_stats(stats: dict[str, float | int], elapsed_s: float) -> JobSnapshot:
        def field(key: str) -> int:
            return int(stats.get(key, 0) or 0)

        return JobSnapshot(
            elapsed_s=elapsed_s,
            memory_total=field("memory_total"),
            memory_remaining=field("memory_remaining"),
            memory_processed=field("memory_processed"),
            memory_iteration=field("memory_iteration"),
            disk_total=field("disk_total"),
            disk_remaining=field("disk_remaining"),
            disk_processed=field("disk_processed"),
            bytes_per_s=float(stats.get("memory_bps", 0) or 0)
            + float(stats.get("disk_bps", 0) or 0),
        )

    def with_rate_since(self, previous: JobSnapshot | None) -> JobSnapshot:
        """libvirt reports no rate for the disk mirror: derive one from the bytes copied
        since an earlier snapshot when its own figure is 0."""
        if self.bytes_per_s > 0 or previous is None or self.elapsed_s <= previous.elapsed_s:
            return self
        copied = (self.memory_processed + self.disk_processed) - (
            previous.memory_processed + previous.disk_processed
        )
        if copied <= 0:
            return self
        return replace(self, bytes_per_s=copied / (self.elapsed_s - previous.elapsed_s))


@dataclass(frozen=True)
class Decision:
    """`abort` (with a reason), or `start_postcopy` (with a reason), or `set_downtime_ms`
    to raise the bound, or carry on."""

    abort: str | None = None
    set_downtime_ms: int | None = None
    start_postcopy: str | None = None


def downtime_for_iteration(max_downtime_ms: int, iteration: int) -> int:
    """The downtime bound for the memory pass we are in."""
    ceiling = max(DOWNTIME_CEILING_MS, max_downtime_ms)
    if iteration < DOWNTIME_FIRST_STEP_ITERATION:
        return max_downtime_ms
    steps = 1 + (iteration - DOWNTIME_FIRST_STEP_ITERATION) // DOWNTIME_STEP_EVERY
    return min(max_downtime_ms * 2 ** min(steps, 32), ceiling)


def postcopy_due(mode: str, snapshot: JobSnapshot) -> str | None:
    """Whether to switch a pre-copy job to post-copy now (`mode`: the `postcopy`
    setting) -> why, or None. Never before the disks are copied: libvirt starts the
    memory stream only once every disk mirror is in sync, and the target must have the
    whole disk before the VM runs there."""
    if mode == "never" or snapshot.memory_total == 0 or snapshot.disk_remaining > 0:
        return None
    # memory_iteration counts the pass in progress: 2 means the first one is done.
    if mode == "after_first_pass" and snapshot.memory_iteration >= 2:
        return "the first memory pass is done"
    if mode == "if_stuck" and snapshot.memory_iteration >= POSTCOPY_STUCK_ITERATION:
        return (
            f"pre-copy does not converge ({snapshot.memory_remaining // MIB} MiB left "
            f"at pass {snapshot.memory_iteration})"
        )
    return None


def decide(
    snapshot: JobSnapshot,
    *,
    max_downtime_ms: int,
    current_downtime_ms: int,
    timeout_s: float,
    postcopy: str = "never",
    in_postcopy: bool = False,
) -> Decision:
    """`postcopy`: the setting; `in_postcopy`: the switch was asked for already. From the
    switch on nothing is aborted: the VM runs on the target, its memory partly on the
    source, and only finishing the copy puts it back together: past the timeout the job is
    paused (to be resumed), never aborted."""
    if in_postcopy:
        if snapshot.elapsed_s >= timeout_s:
            # Paused, not aborted (the monitor knows the difference): resumable.
            return Decision(abort=f"post-copy did not complete within timeout_s={timeout_s:.0f} s")
        return Decision()
    if snapshot.elapsed_s >= timeout_s:
        remaining = (snapshot.memory_remaining + snapshot.disk_remaining) // MIB
        return Decision(
            abort=f"did not complete within timeout_s={timeout_s:.0f} s "
            f"({remaining} MiB still to copy, pass {snapshot.memory_iteration})"
        )
    why = postcopy_due(postcopy, snapshot)
    if why is not None:
        return Decision(start_postcopy=why)
    wanted = downtime_for_iteration(max_downtime_ms, snapshot.memory_iteration)
    if wanted > current_downtime_ms:
        return Decision(set_downtime_ms=wanted)
    return Decision()


def postcopy_state(state: int, reason: int) -> str | None:
    """What a domain's (state, reason) says of a post-copy move: "active" (the memory is
    split and flowing), "failed" (split, the stream broke: resume it), or None."""
    import libvirt

    # The source is paused while the target runs and pulls its memory (libvirt >= 8.5).
    if (state, reason) in (
        (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_POSTCOPY),
        (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_POSTCOPY),
    ):
        return "active"
    if (state, reason) in (
        (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED),
        (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_POSTCOPY_FAILED),
    ):
        return "failed"
    return None


def progress_line(name: str, snapshot: JobSnapshot, stale_s: float = 0.0) -> str:
    """One line of progress for the `pulumi up` output (`stale_s`: age of the stats)."""
    busy = f" (libvirt busy, stats {stale_s:.0f} s old)" if stale_s >= STALE_NOTE_S else ""
    if snapshot.memory_total == 0 and snapshot.disk_total == 0:
        # The job exists but libvirt has no sizes yet: "RAM 0/0, disk 0/0" would mislead.
        return f"{name}: migrating (starting) {snapshot.elapsed_s:.1f} s{busy}"
    remaining = snapshot.memory_remaining + snapshot.disk_remaining
    rate = snapshot.bytes_per_s
    eta = f"{remaining / rate:.1f} s" if rate > 0 else "?"
    phase = "disk" if snapshot.disk_remaining > 0 else "memory"
    if snapshot.memory_iteration > 1:
        phase = f"memory pass {snapshot.memory_iteration}"
    return (
        f"{name}: migrating ({phase}) {snapshot.elapsed_s:.1f} s: "
        f"RAM {snapshot.memory_remaining // MIB}/{snapshot.memory_total // MIB} MiB left, "
        f"disk {snapshot.disk_remaining // MIB}/{snapshot.disk_total // MIB} MiB left, "
        f"{rate / MIB:.0f} MiB/s, ETA {eta}{busy}"
    )
