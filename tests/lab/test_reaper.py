"""lab/reaper.py, the lab hosts' reaper: a daemonizing command's status comes back, and
what it leaves behind is re-parented to the reaper and reaped at once (this machine's
PID 1 leaves such zombies for 1.5-1.8 s, which libvirt waited for on every stop)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab import lifecycle

pytestmark = [pytest.mark.unit]

REAPER = [sys.executable, str(lifecycle.REAPER)]


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def test_the_command_status_comes_back() -> None:
    assert subprocess.run([*REAPER, "sh", "-c", "exit 3"], timeout=10).returncode == 3
    assert subprocess.run([*REAPER, "/nonexistent/command"], timeout=10).returncode == 127
    assert subprocess.run(REAPER, capture_output=True, timeout=10).returncode == 2


def test_an_orphan_is_reparented_to_the_reaper_and_reaped_at_once() -> None:
    # Like `libvirtd -d`: the command starts a background process and exits at once.
    done = subprocess.run(
        [*REAPER, "sh", "-c", "sleep 0.5 </dev/null >/dev/null 2>&1 & echo $!"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert done.returncode == 0
    orphan = int(done.stdout)
    stat = _stat(orphan)
    assert stat is not None and stat[0] != "Z", stat
    reaper = stat[1]
    assert reaper not in (1, os.getpid())
    assert "reaper.py" in Path(f"/proc/{reaper}/cmdline").read_text()
    # It exits after 0.5 s; a zombie of it must not outlive that by more than a moment.
    deadline = time.monotonic() + 5
    zombie_since: float | None = None
    while (stat := _stat(orphan)) is not None and time.monotonic() < deadline:
        if stat[0] == "Z" and zombie_since is None:
            zombie_since = time.monotonic()
        time.sleep(0.005)
    assert stat is None, "the orphan was not reaped within 5 s"
    assert zombie_since is None or time.monotonic() - zombie_since < 0.5
    # With nothing left below it, the reaper ends too.
    deadline = time.monotonic() + 5
    while (stat := _stat(reaper)) is not None and stat[0] != "Z":
        assert time.monotonic() < deadline, "the reaper outlived its last child"
        time.sleep(0.02)
