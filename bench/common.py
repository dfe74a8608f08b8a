"""What the benchmarks share: where results go, medians, the table, the last line."""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def say(line: str) -> None:
    print(line, flush=True)


def median(values: Sequence[float | None]) -> float:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else float("nan")


def results_path(bench: str, suffix: str) -> Path:
    """bench/results/<bench>-<UTC time>.<suffix> (git-ignored)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    return RESULTS / f"{bench}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.{suffix}"


def save_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain fixed-width table."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
        return "-" if value is None else str(value)

    text = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in text)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in text]
    return "\n".join(lines)


def key_values(pairs: dict[str, float | int | str]) -> str:
    """The last line every benchmark prints: `key=value` pairs."""

    def fmt(value: float | int | str) -> str:
        if isinstance(value, float):
            return f"{value:.3f}".rstrip("0").rstrip(".") if value == value else "nan"
        return str(value)

    return " ".join(f"{k}={fmt(v)}" for k, v in pairs.items())


def pulumi_cli(stack: str, *args: str) -> tuple[float, list[tuple[float, str]]]:
    """Run the pulumi CLI on `stack` as a user (or a pipeline) does: non-interactive, no
    stdin. Returns its wall time and its output lines stamped with time.time(); exits
    with the output's tail if it fails. (The
    Automation API would add CLI calls of its own, for outputs and history, to the time.)"""
    from engine import PROJECT_ROOT, engine_env

    started = time.time()
    process = subprocess.Popen(
        ["pulumi", *args, "--non-interactive", "--color", "never", "--stack", stack],
        cwd=PROJECT_ROOT,
        env=engine_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines = [(time.time(), line) for line in process.stdout]
    if process.wait() != 0:
        # The errors (under Diagnostics) and the tail: the tail alone is the outputs table.
        errors = "".join(line for _, line in lines if "error" in line.lower())
        tail = "".join(line for _, line in lines[-30:])
        raise SystemExit(
            f"bench: pulumi {args[0]} failed (exit {process.returncode}):\n{errors}...\n{tail}"
        )
    return time.time() - started, lines
