"""Where the fixed cost of `pulumi up` goes (issue 18): a no-op `up` and a move's `up` of a
one-VM lab stack, each run with the engine's own log (`-v=7 --logflow`), split into the
phases a run passes through:

- cli: the CLI's own start and exit, outside its log (wall time minus the log's span);
- language host: everything before the program runs; of which its `About` and
  `GetRequiredPackages` (both run `pip` and Python to describe the environment);
- program start: the language host's `Run` to the first resource registration (Python's
  start, the imports, reading the stack config);
- provider start: the dynamic-provider plugin's process up to its handshake;
- first provider call: its first `Check` (the provider's own imports happen here);
- calls: the rest of the provider calls, the migration and the cutover included;
- end: the program's last registration to the CLI's exit.

And each host's SSH set-up (TCP, key exchange, authentication), timed from here with
the same code a provider connects with.

    .venv/bin/python bench/fixed_cost.py --runs 5

Every figure is a median of --runs; the last line is key=value pairs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
import time
from pathlib import Path

if not __package__:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import lab
from bench.common import key_values, median, pulumi_cli, results_path, save_json, say, table
from lab import topology
from lab.stacks import GeneratedStack, generated_stack, lab_vm

VM, VIF = "blog", 0
STACK = "bench-fixed-cost"


def _stamp(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _log(lines: list[tuple[float, str]]) -> list[tuple[float, str]]:
    """The engine's JSON log lines (--logtostderr, merged into the output): (time, msg)."""
    entries = []
    for _, line in lines:
        if not line.startswith('{"time"'):
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        entries.append((_stamp(entry["time"]), str(entry.get("msg", ""))))
    return entries


_CALL = re.compile(
    r"^Provider\[\w+\]\.(Check|Diff|Create|Read|Update|Delete)\((?:[^,()]*,)?(urn:[^,)]+)[^)]*\) "
    r"(executing|success|failed)"
)
PHASES = (
    "cli",
    "language host",
    "of which About",
    "of which GetRequiredPackages",
    "program start",
    "provider start",
    "first provider call",
    "calls",
    "end",
    "other",
)


def phases(wall_s: float, entries: list[tuple[float, str]]) -> dict[str, float]:
    """Seconds per phase of one run, from its engine log (pure: unit-tested)."""

    def first(pattern: str, after: float = 0.0) -> float:
        regex = re.compile(pattern)
        return next(t for t, msg in entries if t >= after and regex.search(msg))

    def span(start: str, end: str) -> float:
        began = first(start)
        return first(end, began) - began

    log_start, log_end = entries[0][0], entries[-1][0]
    run_start = first(r"^langhost\[python\]\.Run\(")
    first_registration = first(r"^ResourceMonitor\.RegisterResource received", run_start)
    provider_launch = first(r"^ProviderRegistry\.Check\(urn:\S*:pulumi:providers:pulumi-python::")
    provider_ready = first(r"^Handshake: .*pulumi-resource-pulumi-python", provider_launch)
    calls: list[tuple[float, float, str]] = []
    started: dict[tuple[str, str], float] = {}
    for at, msg in entries:
        match = _CALL.match(msg)
        if not match:
            continue
        key = (match[1], match[2])
        if match[3] == "executing":
            started[key] = at
        elif key in started:
            calls.append((started.pop(key), at, match[2]))
    calls.sort()
    # The dynamic provider's first call imports glidepath's provider code.
    importing = next((call for call in calls if "pulumi-python:dynamic" in call[2]), None)
    first_call = importing[1] - importing[0] if importing else 0.0
    busy = _union([(start, stop) for start, stop, urn in calls if (start, stop, urn) != importing])
    last_registration = max(
        t for t, msg in entries if msg.startswith("ResourceMonitor.RegisterResource")
    )
    found = {
        "cli": wall_s - (log_end - log_start),
        "language host": run_start - log_start,
        "of which About": span(r"^langhost\[python\]\.About\(\) executing", r"\.About\(\) success"),
        "of which GetRequiredPackages": span(
            r"^langhost\[python\]\.GetRequiredPackages\(.* executing",
            r"^langhost\[python\]\.GetRequiredPackages\(.*success",
        ),
        "program start": first_registration - run_start,
        "provider start": provider_ready - provider_launch,
        "first provider call": first_call,
        "calls": busy,
        "end": log_end - max([last_registration, *(stop for _, stop, _ in calls)]),
    }
    # What the phases leave out: the engine's own steps between them.
    found["other"] = wall_s - sum(v for k, v in found.items() if not k.startswith("of which"))
    found["total"] = wall_s
    return found


def _union(intervals: list[tuple[float, float]]) -> float:
    """Time covered by at least one interval (calls run four at a time)."""
    covered, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop <= end:
            continue
        covered += stop - max(start, end)
        end = stop
    return covered


def ssh_setup_s(host: str) -> float:
    """One fresh SSH connection to a lab host with the lab stack's key and known_hosts,
    as a provider opens it (and closes it again)."""
    from providers import transport

    ssh = {
        "private_key_path": str(topology.CLIENT_KEY),
        "known_hosts_path": str(topology.KNOWN_HOSTS),
    }
    endpoint = transport.Endpoint(host, str(topology.hypervisor(host).address))
    session = transport.SshSession(endpoint, transport.credentials_from_config(ssh))
    started = time.monotonic()
    session.run(["true"])
    took = time.monotonic() - started
    session.close()
    return took


def traced_up(stack: GeneratedStack) -> dict[str, float]:
    wall, lines = pulumi_cli(
        stack.stack.name, "up", "--yes", "--skip-preview", "-v=7", "--logtostderr", "--logflow"
    )
    return phases(wall, _log(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    runs = max(1, args.runs)
    say("bench: bringing the lab up")
    lab.up()
    noop: list[dict[str, float]] = []
    move: list[dict[str, float]] = []
    with generated_stack(STACK, {VM: lab_vm(VM, VIF, "old")}) as stack:
        stack.echo = False
        if stack.up().summary.result != "succeeded":
            raise SystemExit("bench: the first pulumi up failed")
        host = "old"
        for run in range(1, runs + 1):
            noop.append(traced_up(stack))
            host = "new" if host == "old" else "old"
            stack.move(VM, host)
            move.append(traced_up(stack))
            say(
                f"bench: run {run}: no-op up {noop[-1]['total']:.2f} s, "
                f"move's up {move[-1]['total']:.2f} s"
            )
        ssh = [ssh_setup_s(h) for h in ("old", "new") for _ in range(runs)]
    rows: list[list[object]] = [
        [phase, *(round(median([r[phase] for r in runs_of]), 3) for runs_of in (noop, move))]
        for phase in (*PHASES, "total")
    ]
    rows.append(["ssh set-up per host", None, round(median(ssh), 3)])
    say(table(["phase, s (median)", "no-op up", "move's up"], rows))
    path = save_json(
        results_path("fixed-cost", "json"), {"runs": runs, "noop": noop, "move": move, "ssh": ssh}
    )
    say(f"bench: {path}")
    say(
        key_values(
            {
                "noop_up_s_p50": round(median([r["total"] for r in noop]), 2),
                "move_up_s_p50": round(median([r["total"] for r in move]), 2),
                "program_start_s_p50": round(median([r["program start"] for r in noop]), 3),
                "first_provider_call_s_p50": round(
                    median([r["first provider call"] for r in noop]), 3
                ),
                "ssh_setup_s_p50": round(median(ssh), 3),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
