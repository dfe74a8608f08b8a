"""Engine limits glidepath designs around (README "Engine notes"), measured for real."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pulumi import automation as auto

from engine.workspace import inline_stack
from tests.engine.sleeper import Sleeper

pytestmark = [pytest.mark.engine]


def _stack(name: str, program: Callable[[], None], tmp_path: Path) -> auto.Stack:
    return inline_stack(f"{name}-{os.getpid()}", "glidepath-engine", program, tmp_path)


def test_provider_calls_run_four_at_a_time(tmp_path: Path) -> None:
    def program() -> None:
        for i in range(8):
            Sleeper(f"s{i}", seconds=4, print_every=10)

    stack = _stack("concurrency", program, tmp_path)
    try:
        stack.up()
        deployment = stack.export_stack().deployment or {}
        resources = [r for r in deployment["resources"] if r["type"].endswith("Sleeper")]
        spans = [(r["outputs"]["started"], r["outputs"]["finished"]) for r in resources]
        assert len(spans) == 8
        most = max(sum(1 for s, f in spans if s <= t < f) for t, _ in spans)
        print(f"engine: at most {most} dynamic-provider calls ran at once (8 requested)")
        assert most == 4
    finally:
        stack.destroy()
        stack.workspace.remove_stack(stack.name, force=True)


@pytest.mark.slow
def test_update_of_240s_completes_and_streams_progress(tmp_path: Path) -> None:
    seconds = {"value": 1.0}

    def program() -> None:
        Sleeper("long", seconds=seconds["value"], print_every=20)

    stack = _stack("long-update", program, tmp_path)
    try:
        stack.up()
        seconds["value"] = 240.0
        arrivals: list[tuple[float, str]] = []
        started = time.monotonic()
        result = stack.up(on_output=lambda line: arrivals.append((time.monotonic(), line)))
        elapsed = time.monotonic() - started
        assert result.summary.result == "succeeded"
        assert elapsed >= 240
        progress = [t - started for t, line in arrivals if "sleeper long:" in line]
        print(f"engine: 240 s update finished in {elapsed:.0f} s; progress lines at {progress}")
        # Lines printed during the call reach the CLI output while it runs, not at the end.
        assert len(progress) >= 10
        assert progress[0] < 60 and progress[-1] > 200
    finally:
        stack.destroy()
        stack.workspace.remove_stack(stack.name, force=True)
