"""Moving a whole server: several VMs in one `pulumi up` against moving them one by one
(issues 6 and 17).

    .venv/bin/python bench/concurrent.py [--counts 4,8] [--runs N]

For each count N (4, then 8: the blog's whole /29) a generated lab stack runs N VMs on
`old` (vif0..vifN-1, 203.0.113.0..N-1). Two ways to move them all:
- together: every `host:` changed at once, one `pulumi up` (glidepath:moves.at_once
  decides how many migrate at a time), old -> new and back, --runs times;
- one by one: one `host:` changed per `pulumi up` (the cutover comes with the last), old
  -> new and back, once, for comparison in the same run.
The client pings every VM every 10 ms and holds a TCP stream to each (every byte checked)
throughout. Per VM: its longest reply gap and whether its stream broke; per move: the
total time of the `pulumi up`(s), when the cutover's switch happened, and whether an `up`
failed (then the next `up` is run to converge, and the failure counted). Results: a table,
bench/results/concurrent-<time>.json and .png (each VM's reply timeline, the switch
marked), and a last line of key=value pairs.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if not __package__:
    # Run as a script: import from the repository, not from bench/ (whose concurrent.py
    # would shadow the standard library's `concurrent`).
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import lab
from bench.common import key_values, median, pulumi_cli, results_path, save_json, say, table
from lab import guest
from lab.probe import probe, start_probe
from lab.stacks import GeneratedStack, generated_stack, lab_hosts, lab_vm

PROBE_S = 300.0
SWITCH = re.compile(r"\bnet0: switching ")


@dataclass
class Way:
    count: int
    way: str  # "together" or "one by one"
    target: str
    run: int
    total_s: float
    ups: int
    switch_at_s: float | None  # after the first `up` started
    gaps_ms: dict[str, float]
    lost_writes: dict[str, int]
    tcp_broken: dict[str, str]  # VM -> what broke its stream
    failed: str | None = None  # the failed `up`'s error, if one failed
    timelines: dict[str, list[tuple[int, float]]] = field(default_factory=dict)


def vm_spec(index: int, host: str) -> dict[str, Any]:
    """Like the lab stack's blog, on vif<index> with 203.0.113.<index> (all 8 of the /29)."""
    name = f"move{index}"
    vm = lab_vm(name, index, host)
    ip = f"203.0.113.{index}"
    vm["ip"] = ip
    vm["boot"] = {
        **vm["boot"],
        "cmdline": f"console=ttyS0 panic=-1 gp.ip={ip} gp.prefix=203.0.113.0/29 gp.name={name}",
    }
    return vm


def wait_answers(ips: list[str], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    waiting = list(ips)
    while waiting and time.monotonic() < deadline:
        waiting = [ip for ip in waiting if not probe(ip, 1).received]
    if waiting:
        raise SystemExit(f"bench: {', '.join(waiting)} do not answer after {seconds:.0f} s")


def up(stack: GeneratedStack) -> tuple[float, float | None]:
    """One CLI `pulumi up`: its time, and the time.time() of the cutover's switch."""
    try:
        seconds, lines = pulumi_cli(stack.stack.name, "up", "--yes", "--skip-preview")
    except SystemExit:
        # A VM that stopped answering may be the TCG guest's own failure: its console says.
        say(guest.console_tails(list(stack.vms()), lab_hosts()))
        raise
    switched = next((at for at, line in lines if SWITCH.search(line)), None)
    return seconds, switched


def move(stack: GeneratedStack, count: int, way: str, target: str, run: int) -> Way:
    names = list(stack.vms())
    ips = {name: stack.vms()[name]["ip"] for name in names}
    probes = {name: start_probe(ips[name], PROBE_S, tcp=True) for name in names}
    started = time.time()
    total, ups, switched_at, failed = 0.0, 0, None, None
    try:
        batches = [names] if way == "together" else [[name] for name in names]
        for batch in batches:
            for name in batch:
                stack.raw["config"]["glidepath:vms"][name]["host"] = target
            stack.save()
            try:
                seconds, switched = up(stack)
            except SystemExit as err:
                # Counted, then converged: the next `up` finishes what this one left.
                failed = str(err).splitlines()[0]
                say(f"bench: FAILED: {err}")
                seconds, switched = up(stack)
                ups += 1
            total, ups = total + seconds, ups + 1
            switched_at = switched_at or switched
    finally:
        timelines = {name: running.stop() for name, running in probes.items()}
    wait_answers(list(ips.values()))
    result = Way(
        count,
        way,
        target,
        run,
        total,
        ups,
        None if switched_at is None else switched_at - started,
        {name: t.longest_gap_ms for name, t in timelines.items()},
        {
            name: sum(
                b - a + 1
                for a, b in guest.sequence_gaps(
                    guest.read_sequence(target, stack.vms()[name]["disks"][0]["path"])
                )
            )
            for name in names
        },
        {name: str(t.tcp.get("error")) for name, t in timelines.items() if t.tcp_broken},
        failed,
        # On one clock: seconds after the first `up` started, like switch_at_s.
        {
            name: [(seq, at + t.started_at - started) for seq, at in t.replies]
            for name, t in timelines.items()
        },
    )
    say(
        f"bench: {count} VMs {way} -> {target} (run {run}): {total:.1f} s in {ups} up(s)"
        f"{', FAILED once' if failed else ''}, tcp streams broken {len(result.tcp_broken)}, "
        f"switch at "
        f"{result.switch_at_s if result.switch_at_s is None else round(result.switch_at_s, 1)}"
        f" s, gaps (ms) {', '.join(f'{n} {g:.0f}' for n, g in result.gaps_ms.items())}"
    )
    return result


def plot(ways: list[Way], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(ways), 1, figsize=(11, 2.2 * len(ways)), squeeze=False)
    for ax, way in zip(axes[:, 0], ways, strict=True):
        for row, (_name, replies) in enumerate(sorted(way.timelines.items())):
            ax.plot([r for _, r in replies], [row] * len(replies), "|", markersize=4)
        if way.switch_at_s is not None:
            ax.axvline(way.switch_at_s, color="tab:red", linestyle="--", label="switch")
            ax.legend(loc="upper right", fontsize=7)
        ax.set_yticks(range(len(way.timelines)), sorted(way.timelines), fontsize=7)
        ax.set_title(
            f"{way.count} VMs {way.way} -> {way.target} (run {way.run}): {way.total_s:.1f} s",
            fontsize=9,
        )
        ax.set_xlabel("seconds after the first up started (replies; blank is a gap)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="4,8", help="how many VMs to move (at most 8)")
    parser.add_argument(
        "--runs", type=int, default=1, help="whole-server moves together, each way, per count"
    )
    args = parser.parse_args()
    counts = [int(n) for n in args.counts.split(",")]
    if max(counts) > 8:
        raise SystemExit("bench: at most 8 VMs (one /29)")
    lab.up()
    ways: list[Way] = []
    for count in counts:
        vms = {f"move{i}": vm_spec(i, "old") for i in range(count)}
        with generated_stack(f"bench-concurrent-{count}", vms) as stack:
            stack.echo = False
            say(f"bench: {count} VMs on old")
            up(stack)
            wait_answers([vm["ip"] for vm in vms.values()])
            for run in range(1, max(1, args.runs) + 1):
                for target in ("new", "old"):
                    ways.append(move(stack, count, "together", target, run))
            for target in ("new", "old"):
                ways.append(move(stack, count, "one by one", target, 1))
    return report(ways)


def report(ways: list[Way]) -> int:
    rows = [
        [w.count, w.way, w.target, w.run, w.ups, "yes" if w.failed else "", w.total_s,
         w.switch_at_s, round(median(list(w.gaps_ms.values()))), round(max(w.gaps_ms.values())),
         sum(w.lost_writes.values()), len(w.tcp_broken)]
        for w in ways
    ]  # fmt: skip
    headers = ["VMs", "way", "to", "run", "ups", "failed", "total_s", "switch_at_s"]
    say(table([*headers, "gap_ms_p50", "gap_ms_max", "lost_writes", "tcp_resets"], rows))
    summary = []
    pairs: dict[str, float | int | str] = {}
    for count in sorted({w.count for w in ways}):
        for way in ("together", "one by one"):
            of = [w for w in ways if w.count == count and w.way == way]
            if not of:
                continue
            gaps = [g for w in of for g in w.gaps_ms.values()]
            row = {
                "moves": len(of),
                "failed": sum(1 for w in of if w.failed),
                "gap_ms_p50": round(median(gaps)),
                "gap_ms_max": round(max(gaps)),
                "tcp_resets": sum(len(w.tcp_broken) for w in of),
                "lost_writes": sum(sum(w.lost_writes.values()) for w in of),
                "total_s_p50": round(median([w.total_s for w in of]), 1),
            }
            summary.append([count, way, *row.values()])
            key = f"{count}_{'together' if way == 'together' else 'one_by_one'}"
            pairs.update({f"{name}_{key}": value for name, value in row.items()})
    say(
        table(
            ["VMs", "way", "moves", "failed", "gap_ms_p50", "gap_ms_max", "tcp_resets",
             "lost_writes", "total_s_p50"],
            summary,
        )
    )  # fmt: skip
    json_path = results_path("concurrent", "json")
    save_json(json_path, [asdict(w) for w in ways])
    png_path = json_path.with_suffix(".png")
    plot(ways, png_path)
    say(f"bench: {len(ways)} whole-server moves; {json_path}, {png_path}")
    say(key_values(pairs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
