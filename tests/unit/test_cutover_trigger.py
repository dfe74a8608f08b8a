"""The on-host cutover script (providers/plans/cutover.py), run by a real /bin/sh here
with a stand-in `tcpdump` that exits as told: which commands run, and what it prints."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from providers.plans import Plan, PlanError
from providers.plans.cutover import (
    DONE,
    FIRST_PACKET,
    NO_PACKET,
    NO_PACKET_EXIT,
    on_first_packet,
    parse_pid,
)

pytestmark = [pytest.mark.unit]

HOSTILE_PREFIX = "203.0.113.0/29; touch /tmp/pwned"


def _run(tmp_path: Path, tcpdump_exit: int, copies: int) -> tuple[int, list[str], list[str]]:
    """Run the trigger with `copies` commands that each append a line to a log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    seen = tmp_path / "tcpdump-args"
    fake = bin_dir / "tcpdump"
    fake.write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$@" > {seen}\n'
        f'echo "listening on $6" >&2\nexit {tcpdump_exit}\n'
    )
    fake.chmod(0o755)
    log = tmp_path / "ran"
    plan = Plan.run(*[("sh", "-c", 'echo "$0" >> "$1"', "iptables -D", str(log))] * copies)
    trigger = on_first_packet(5, "br0", HOSTILE_PREFIX, plan)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    result = subprocess.run(trigger.argv, env=env, capture_output=True, text=True, timeout=20)
    ran = log.read_text().splitlines() if log.exists() else []
    assert seen.read_text().splitlines()[-1] == HOSTILE_PREFIX  # one argument, intact
    assert not Path("/tmp/pwned").exists()
    lines = result.stdout.splitlines()
    assert parse_pid(lines[0]) is not None
    return result.returncode, lines[1:], ran


def test_first_packet_then_every_copy_is_deleted(tmp_path: Path) -> None:
    status, lines, ran = _run(tmp_path, 0, copies=2)
    assert (status, lines, ran) == (0, [FIRST_PACKET, DONE], ["iptables -D", "iptables -D"])


def test_no_packet_keeps_the_egress_mark(tmp_path: Path) -> None:
    # `timeout` exits 124 when no packet came: whatever the backend said, the route has
    # not been seen to move, so the mark stays (the VMs keep leaving through the tunnel).
    status, lines, ran = _run(tmp_path, 124, copies=1)
    assert (status, lines, ran) == (NO_PACKET_EXIT, [NO_PACKET], [])


def test_a_watcher_that_fails_runs_nothing(tmp_path: Path) -> None:
    status, lines, ran = _run(tmp_path, 1, copies=1)
    assert (status, lines, ran) == (3, [], [])


def test_nothing_to_delete_still_reports_done(tmp_path: Path) -> None:
    status, lines, ran = _run(tmp_path, 0, copies=0)
    assert (status, lines, ran) == (0, [FIRST_PACKET, DONE], [])


def test_different_commands_or_writes_are_refused() -> None:
    with pytest.raises(PlanError, match="one command"):
        on_first_packet(5, "br0", "203.0.113.0/29", Plan.run(("a",), ("b",)))


def test_parse_pid() -> None:
    assert parse_pid("pid 4242\n") == 4242
    assert parse_pid("pid x") is None
    assert parse_pid("listening") is None
