"""Post-copy (issue 18): when the policy switches a move to post-copy, the monitor doing
it on a scripted domain and a fake clock, the job's flags and parameters, and what a
failed move does when the VM's memory is split between the hosts."""

from __future__ import annotations

from typing import Any

import libvirt
import pytest

from providers.migration import MIB, job
from providers.migration.path import Path
from providers.migration.policy import (
    POSTCOPY_STUCK_ITERATION,
    Decision,
    JobSnapshot,
    decide,
    postcopy_due,
    postcopy_state,
)
from providers.migration.preflight import describe_move
from providers.schema.vm_placement import Migration
from tests.unit.test_migration_job import ONE_OWNER, Connection
from tests.unit.test_migration_policy import Clock, ScriptedDomain, _monitor, _stats

pytestmark = [pytest.mark.unit]


def _snap(iteration: int, *, disk_remaining_mib: int = 0, elapsed_s: float = 5) -> JobSnapshot:
    return JobSnapshot(
        elapsed_s=elapsed_s,
        memory_total=128 * MIB,
        memory_remaining=40 * MIB,
        memory_iteration=iteration,
        disk_total=64 * MIB,
        disk_remaining=disk_remaining_mib * MIB,
    )


# --- policy ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "iteration", "due"),
    [
        ("never", 9, False),
        ("after_first_pass", 1, False),  # the first pass is still running
        ("after_first_pass", 2, True),
        ("if_stuck", 2, False),
        ("if_stuck", POSTCOPY_STUCK_ITERATION - 1, False),
        ("if_stuck", POSTCOPY_STUCK_ITERATION, True),
    ],
)
def test_when_post_copy_is_due(mode: str, iteration: int, due: bool) -> None:
    assert (postcopy_due(mode, _snap(iteration)) is not None) is due


def test_never_before_the_disks_are_copied_nor_before_libvirt_has_figures() -> None:
    assert postcopy_due("after_first_pass", _snap(3, disk_remaining_mib=1)) is None
    assert postcopy_due("if_stuck", JobSnapshot(elapsed_s=9, memory_iteration=7)) is None


def test_if_stuck_switches_instead_of_raising_the_pause() -> None:
    stuck = _snap(POSTCOPY_STUCK_ITERATION)
    plain = decide(stuck, max_downtime_ms=100, current_downtime_ms=100, timeout_s=600)
    assert plain == Decision(set_downtime_ms=200)
    switched = decide(
        stuck, max_downtime_ms=100, current_downtime_ms=100, timeout_s=600, postcopy="if_stuck"
    )
    assert switched.start_postcopy == "pre-copy does not converge (40 MiB left at pass 4)"
    assert switched.set_downtime_ms is None


def test_in_post_copy_nothing_is_aborted_before_the_timeout_and_then_only_paused() -> None:
    kwargs: dict[str, Any] = {"max_downtime_ms": 100, "current_downtime_ms": 100}
    assert decide(_snap(9, elapsed_s=50), timeout_s=60, in_postcopy=True, **kwargs) == Decision()
    late = decide(_snap(9, elapsed_s=61), timeout_s=60, in_postcopy=True, **kwargs)
    assert late.abort == "post-copy did not complete within timeout_s=60 s"


@pytest.mark.parametrize(
    ("state", "reason", "said"),
    [
        (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_POSTCOPY, "active"),
        (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_POSTCOPY, "active"),
        (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED, "failed"),
        (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_POSTCOPY_FAILED, "failed"),
        (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_MIGRATION, None),
        (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_MIGRATED, None),
    ],
)
def test_a_domain_s_state_says_whether_its_memory_is_split(
    state: int, reason: int, said: str | None
) -> None:
    assert postcopy_state(state, reason) == said


# --- the monitor -------------------------------------------------------------------------


class PostCopyDomain(ScriptedDomain):
    """A scripted source that takes the switch to post-copy (or refuses it)."""

    def __init__(self, *args: Any, refuse: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._refuse = refuse
        self.switches: list[float] = []
        self.pauses: list[float] = []

    def migrateStartPostCopy(self, flags: int) -> None:
        self.switches.append(self.elapsed())
        if self._refuse:
            raise libvirt.libvirtError("migration is completing")

    def abortJobFlags(self, flags: int) -> None:
        assert flags == libvirt.VIR_DOMAIN_ABORT_JOB_POSTCOPY
        self.pauses.append(self.elapsed())
        self.aborted = True


def _postcopy_run(
    dom: PostCopyDomain, clock: Clock, mode: str, timeout_s: float = 600, resuming: bool = False
) -> tuple[Any, list[str]]:
    monitor, lines = _monitor(dom, clock)
    result = monitor.run(
        {}, 0, max_downtime_ms=100, timeout_s=timeout_s, postcopy=mode, resuming=resuming
    )
    return result, lines


def test_after_the_first_pass_the_monitor_switches_once() -> None:
    clock = Clock()
    timeline = [(0, {"disk_total": 64 * MIB, "disk_remaining": 64 * MIB}), (2, _stats(1, 90))]
    timeline += [(4, _stats(2, 30)), (6, _stats(2, 20))]
    dom = PostCopyDomain(clock, timeline, ends_at=8)
    result, lines = _postcopy_run(dom, clock, "after_first_pass")
    assert dom.switches == [4.0]
    assert "vm: switching to post-copy: the first memory pass is done" in lines
    assert result.failure is None and result.postcopy
    assert result.record("old", "new")["postcopy"] is True
    assert dom.downtimes == []


def test_a_refused_switch_is_said_and_pre_copy_goes_on() -> None:
    clock = Clock()
    dom = PostCopyDomain(clock, [(0, _stats(2, 30)), (3, _stats(5, 10))], ends_at=5, refuse=True)
    result, lines = _postcopy_run(dom, clock, "after_first_pass")
    assert dom.switches == [0.5]  # not asked again
    assert any(line.startswith("vm: post-copy refused, pre-copy goes on") for line in lines)
    assert result.failure is None and not result.postcopy
    assert dom.downtimes  # from pass 4 on the pause is raised as without post-copy


def test_a_post_copy_past_its_timeout_is_paused_never_aborted() -> None:
    clock = Clock()
    dom = PostCopyDomain(clock, [(0, _stats(1, 30)), (1, _stats(2, 30))])
    result, lines = _postcopy_run(dom, clock, "after_first_pass", timeout_s=20)
    assert dom.switches == [1.0]
    assert dom.aborts == []  # abortJob would be refused, and wrong
    assert dom.pauses == [20.0]
    assert "vm: pausing post-copy: post-copy did not complete within timeout_s=20 s" in lines
    assert result.failure is not None and result.postcopy


def test_a_resumed_post_copy_is_not_switched_again() -> None:
    clock = Clock()
    dom = PostCopyDomain(clock, [(0, _stats(2, 30))], ends_at=3)
    result, _ = _postcopy_run(dom, clock, "after_first_pass", resuming=True)
    assert dom.switches == [] and result.failure is None and result.postcopy


# --- the job -----------------------------------------------------------------------------


def test_post_copy_is_allowed_by_a_flag_and_resumed_by_another() -> None:
    settings = Migration(postcopy="if_stuck", auto_converge=False)
    assert job.flags(settings) == ONE_OWNER | libvirt.VIR_MIGRATE_POSTCOPY
    assert job.resume_flags(settings) == (
        ONE_OWNER | libvirt.VIR_MIGRATE_POSTCOPY | libvirt.VIR_MIGRATE_POSTCOPY_RESUME
    )
    assert not job.flags(Migration()) & libvirt.VIR_MIGRATE_POSTCOPY


def test_the_post_copy_limit_is_its_own_parameter() -> None:
    settings = Migration(postcopy="after_first_pass", postcopy_bandwidth_mib_s=4)
    value = job.params("<domain/>", ["vda"], settings, Path("198.18.100.2"))
    assert value[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY] == 4
    assert value[libvirt.VIR_MIGRATE_PARAM_URI] == "tcp://198.18.100.2"
    assert libvirt.VIR_MIGRATE_PARAM_BANDWIDTH not in value


class SplitDomain:
    def __init__(self, state: int, reason: int) -> None:
        self._state = (state, reason)
        self.calls: list[str] = []

    def state(self) -> tuple[int, int]:
        return self._state

    def isActive(self) -> bool:
        return True

    def resume(self) -> None:
        self.calls.append("resume")

    def create(self) -> None:
        self.calls.append("create")


def test_a_broken_post_copy_never_resumes_the_source_copy() -> None:
    source = SplitDomain(libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED)
    target = SplitDomain(libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_POSTCOPY_FAILED)
    host, said = job.recover(
        Connection(source),  # type: ignore[arg-type]
        Connection(target),  # type: ignore[arg-type]
        "db",
        "old",
        "new",
    )
    assert host == "new"  # its route stays with the half that runs
    assert said.startswith("Its memory is split between old and new (post-copy)")
    assert "Never resume it on old by hand" in said
    assert source.calls == [] and target.calls == []


# --- the settings --------------------------------------------------------------------------


def test_the_setting_is_left_out_of_stored_inputs_unless_used() -> None:
    assert "postcopy" not in Migration().model_dump()
    assert Migration(postcopy="if_stuck").model_dump()["postcopy"] == "if_stuck"


def test_a_post_copy_limit_without_post_copy_is_refused() -> None:
    with pytest.raises(ValueError, match="postcopy_bandwidth_mib_s"):
        Migration(postcopy_bandwidth_mib_s=4)


def test_the_preview_names_the_post_copy_setting() -> None:
    line = describe_move("db", "old", "new", 1024, 256, 300, "after_first_pass")
    assert line.endswith(", post-copy after the first memory pass (postcopy: after_first_pass)")
    assert "post-copy" not in describe_move("db", "old", "new", 1024, 256, 300)
