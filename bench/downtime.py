"""Downtime and overhead of a move through `pulumi up`, against the blog's procedure by
hand, in the same run on the lab (issue 6).

    .venv/bin/python bench/downtime.py --runs 5      (or: make bench-downtime)

1. glidepath: a lab stack with one VM (`blog`, like the committed lab stack); N round
   trips old -> new -> old, each move a real `pulumi up` after changing `host:`; once with
   memory and disks through the tunnel (the default) and once with `transport: direct`
   (in clear), so the cost of encryption is measured in the same run;
2. baseline: the same VM shape started by hand, N round trips with lab.baseline's
   hand_migrate (the blog's tunnel, vm-out table, mark, `virsh migrate`, switch, unmark),
   as the blog wrote it: QEMU's default maximum downtime (300 ms);
3. tuned: the same hand procedure as a careful operator runs it, with `virsh
   migrate-setmaxdowntime` set to glidepath's own max_downtime_ms first. The anchor to
   beat.
During every move the client pings the VM every 10 ms through core. Per move: the
longest reply gap, QEMU's downtime, the total time (the `pulumi up` wall time; the hand
procedure from opening its tunnel to closing it), and the guest's lost disk writes.
Results: a table, bench/results/downtime-<time>.json and .png (the probe timeline of one
move of each kind with its phases), and a last line of key=value pairs.
"""

from __future__ import annotations

import argparse
import datetime
import re
import subprocess
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
from lab import baseline, guest
from lab.probe import ProbeResult, probe, start_probe
from lab.proc import popen
from lab.stacks import GeneratedStack, generated_stack, lab_vm
from providers.schema.vm_placement import Migration

VM, VIF = "blog", 0
HAND_VM = "hand"
PROBE_S = 180.0


@dataclass
class MoveResult:
    kind: str  # "glidepath", "glidepath-direct", "baseline" or "tuned"
    run: int
    source: str
    target: str
    gap_ms: float
    lost_pings: int
    qemu_downtime_ms: float | None
    total_s: float
    migrate_s: float | None
    lost_writes: int
    # libvirt's lifecycle events: the VM paused on the source -> resumed on the target
    # (ms), and the longest reply gap overlapping that pause (ms); None without events.
    pause_ms: float | None = None
    switch_gap_ms: float | None = None
    # Phases in seconds since the probe started: name -> time.
    phases: dict[str, float] = field(default_factory=dict)
    timeline: dict[str, Any] = field(default_factory=dict)


def _timeline(result: ProbeResult) -> dict[str, Any]:
    return {
        "interval_s": result.interval_s,
        "duration_s": result.duration_s,
        "replies": result.replies,
    }


def wait_answers(ip: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if probe(ip, 1).received:
            return
    raise SystemExit(f"bench: {ip} does not answer from the client after {seconds:.0f} s")


def lost_writes(host: str, disk: str) -> int:
    return sum(b - a + 1 for a, b in guest.sequence_gaps(guest.read_sequence(host, disk)))


# `virsh event --timestamp` lines: "2026-11-26 10:54:01.163+0000: event 'lifecycle' for
# domain 'blog': Suspended Migrated".
_EVENT = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\+0000: event 'lifecycle' "
    r"for domain '([^']+)': (\w+) (\w+)"
)


class PauseWatch:
    """libvirt's lifecycle events of both hosts during one move (`virsh event` on each):
    when the VM paused on the source and resumed on the target, by libvirt's clock."""

    def __init__(self, vm: str, source: str, target: str) -> None:
        self.vm, self.source, self.target = vm, source, target
        argv = ["stdbuf", "-oL", "virsh", "event", "--loop", "--timestamp", "--event", "lifecycle"]
        self._procs = {host: popen(host, argv, stdout=subprocess.PIPE) for host in (source, target)}
        time.sleep(0.3)  # virsh connects and registers before the move starts

    def stop(self) -> tuple[float, float] | None:
        """(paused at, resumed at) as wall-clock seconds, or None if either is missing."""
        events: dict[str, list[tuple[float, str]]] = {}
        for host, proc in self._procs.items():
            proc.terminate()
            out = proc.communicate(timeout=10)[0] or ""
            events[host] = []
            for line in out.splitlines():
                match = _EVENT.match(line.strip())
                if match and match[2] == self.vm:
                    at = datetime.datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S.%f")
                    stamp = at.replace(tzinfo=datetime.UTC).timestamp()
                    events[host].append((stamp, f"{match[3]} {match[4]}"))
        paused = [at for at, what in events[self.source] if what == "Suspended Migrated"]
        if not paused:
            return None
        resumed = [
            at for at, what in events[self.target] if what == "Resumed Migrated" and at >= paused[0]
        ]
        return (paused[0], resumed[0]) if resumed else None


def at_the_switch(
    timeline: ProbeResult, pause: tuple[float, float] | None
) -> tuple[float | None, float | None]:
    """(pause ms, the longest reply gap overlapping the pause in ms)."""
    if pause is None:
        return None, None
    paused, resumed = (at - timeline.started_at for at in pause)
    overlapping = [
        ms for start, ms in timeline.gaps() if start <= resumed and start + ms / 1000 >= paused
    ]
    return round((resumed - paused) * 1000, 1), max(overlapping, default=0.0)


def _pause_phases(timeline: ProbeResult, pause: tuple[float, float] | None) -> dict[str, float]:
    if pause is None:
        return {}
    return {"paused": pause[0] - timeline.started_at, "resumed": pause[1] - timeline.started_at}


# Lines of the `pulumi up` output that mark the phases of a move.
PHASE_LINES = {
    "migration starts": re.compile(rf"\b{VM}: migrating \w+ -> \w+$"),
    "migration done": re.compile(rf"\b{VM}: moved \w+ -> \w+ in"),
    "switch": re.compile(r"\bnet0: switching "),
    "first direct packet": re.compile(r"\bnet0: first packet on "),
}


def glidepath_move(
    stack: GeneratedStack, run: int, source: str, target: str, kind: str = "glidepath"
) -> MoveResult:
    disk = stack.disks()[0]
    stack.move(VM, target)
    watch = PauseWatch(VM, source, target)
    running = start_probe(lab_vm(VM, VIF, target)["ip"], PROBE_S)
    started = time.time()
    try:
        total, lines = pulumi_cli(stack.stack.name, "up", "--yes", "--skip-preview")
    finally:
        timeline = running.stop()
        pause = watch.stop()
    migration = stack.outputs()["last_migrations"][VM]
    phases: dict[str, float] = {"pulumi up": started - timeline.started_at}
    for at, line in lines:
        for phase, pattern in PHASE_LINES.items():
            if phase not in phases and pattern.search(line.rstrip()):
                phases[phase] = at - timeline.started_at
    phases.update(_pause_phases(timeline, pause))
    wait_answers(timeline.target)
    return MoveResult(
        kind,
        run,
        source,
        target,
        timeline.longest_gap_ms,
        timeline.lost,
        float(migration["downtime_ms"]),
        total,
        float(migration["seconds"]),
        lost_writes(target, disk),
        *at_the_switch(timeline, pause),
        phases,
        _timeline(timeline),
    )


def hand_move(
    vm: guest.VmSpec,
    run: int,
    source: str,
    target: str,
    kind: str = "baseline",
    max_downtime_ms: int | None = None,
) -> MoveResult:
    watch = PauseWatch(vm.name, source, target)
    running = start_probe(vm.ip, PROBE_S)
    time.sleep(0.5)
    try:
        hand = baseline.hand_migrate(
            vm.name, source, target, disk_path=vm.disk_path, max_downtime_ms=max_downtime_ms
        )
    finally:
        timeline = running.stop()
        pause = watch.stop()
    start = hand.migrate_started_at - timeline.started_at
    phases = {
        "migration starts": start,
        "migration done": start + hand.migrate_s,
        "switch": hand.switched_at - timeline.started_at,
    }
    if hand.first_direct_packet_s is not None:
        phases["first direct packet"] = phases["switch"] + hand.first_direct_packet_s
    phases.update(_pause_phases(timeline, pause))
    wait_answers(vm.ip)
    return MoveResult(
        kind,
        run,
        source,
        target,
        timeline.longest_gap_ms,
        timeline.lost,
        hand.libvirt_downtime_ms,
        hand.total_s,
        hand.migrate_s,
        lost_writes(target, vm.disk_path),
        *at_the_switch(timeline, pause),
        phases,
        _timeline(timeline),
    )


def plot(moves: list[MoveResult], path: Path) -> None:
    """The probe timeline (reply round-trip times; lost pings as gaps) of the move with
    the median gap of each kind, its phases marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = ["glidepath", "baseline", "tuned"]
    fig, axes = plt.subplots(len(kinds), 1, figsize=(11, 10), squeeze=False)
    for ax, kind in zip(axes[:, 0], kinds, strict=True):
        of_kind = sorted((m for m in moves if m.kind == kind), key=lambda m: m.gap_ms)
        if not of_kind:
            continue
        move = of_kind[len(of_kind) // 2]
        interval = move.timeline["interval_s"]
        replies = move.timeline["replies"]
        xs = [received for _seq, received in replies]
        rtts = [(received - seq * interval) * 1000 for seq, received in replies]
        ax.plot(xs, rtts, ".", markersize=2, color="tab:blue", label="reply (RTT)")
        for (name, at), color in zip(
            sorted(move.phases.items(), key=lambda p: p[1]),
            [
                "tab:gray",
                "tab:orange",
                "tab:olive",
                "tab:cyan",
                "tab:green",
                "tab:red",
                "tab:purple",
            ],
            strict=False,
        ):
            ax.axvline(at, color=color, linestyle="--", linewidth=1, label=name)
        ax.set_title(
            f"{kind}: {move.source} -> {move.target} (run {move.run}), longest gap "
            f"{move.gap_ms:.0f} ms, QEMU downtime {move.qemu_downtime_ms or 0:.0f} ms"
        )
        ax.set_xlabel("seconds since the probe started")
        ax.set_ylabel("ping RTT, ms")
        ax.set_yscale("log")
        ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="round trips of each kind")
    parser.add_argument(
        "--max-downtime-ms",
        type=int,
        default=None,
        help="the glidepath VM's migration.max_downtime_ms (default: glidepath's own)",
    )
    parser.add_argument(
        "--transports",
        type=lambda text: [t for t in text.split(",") if t],
        default=["tunnel", "direct"],
        help="glidepath's migration.transport values to measure, comma-separated "
        "(default: tunnel,direct: what encrypting memory and disks costs, same run)",
    )
    args = parser.parse_args()
    if not set(args.transports) <= {"tunnel", "direct"} or not args.transports:
        parser.error("--transports takes tunnel and/or direct")
    runs = max(1, args.runs)
    say("bench: bringing the lab up")
    lab.up()
    moves: list[MoveResult] = []

    noop_ups: list[float] = []
    for transport in args.transports:
        kind = "glidepath" if transport == "tunnel" else f"glidepath-{transport}"
        say(
            f"bench: {kind}, {runs} round trips old -> new -> old through `pulumi up` "
            f"(memory and disks: transport {transport})"
        )
        migration: dict[str, Any] = {"transport": transport}
        if args.max_downtime_ms is not None:
            migration["max_downtime_ms"] = args.max_downtime_ms
            say(f"bench: glidepath moves with max_downtime_ms {args.max_downtime_ms}")
        vm_config = lab_vm(VM, VIF, "old", migration=migration)
        with generated_stack(f"bench-downtime-{transport}", {VM: vm_config}) as stack:
            stack.echo = False  # the table says what matters; the JSON keeps the rest
            if stack.up().summary.result != "succeeded":
                raise SystemExit("bench: the first pulumi up failed")
            wait_answers(lab_vm(VM, VIF, "old")["ip"])
            for run in range(1, runs + 1):
                for source, target in (("old", "new"), ("new", "old")):
                    moves.append(glidepath_move(stack, run, source, target, kind))
                    say(f"bench: {_describe(moves[-1])}")
            if noop_ups:
                continue
            # The engine's fixed cost, in the same run: the same `pulumi up` with nothing
            # to change (every resource read and diffed, nothing moved).
            noop_ups = [
                pulumi_cli(stack.stack.name, "up", "--yes", "--skip-preview")[0]
                for _ in range(runs)
            ]
            say(
                "bench: no-op pulumi up of the same stack: "
                + ", ".join(f"{s:.2f}" for s in noop_ups)
                + " s"
            )

    tuned_ms = args.max_downtime_ms or Migration().max_downtime_ms
    vm = guest.VmSpec(HAND_VM, vif=VIF)
    for host in ("old", "new"):
        guest.remove_vm(host, vm.name)
        lab.run(host, ["rm", "-f", "--", vm.disk_path], check=False, timeout=30)
        # Whatever the demo, the tests or the stacks above left, the hand VM's start
        # needs the vif-route script (libvirt runs it when the tap comes up).
        baseline.ensure_vif_route_script(host)
    baseline.switch_core("old")
    guest.start_vm("old", vm)
    try:
        wait_answers(vm.ip)
        for kind, max_downtime_ms, what in (
            ("baseline", None, "the blog's procedure as written: QEMU's 300 ms"),
            ("tuned", tuned_ms, f"the same with migrate-setmaxdowntime {tuned_ms} ms"),
        ):
            say(f"bench: {kind}, {runs} round trips by hand ({what})")
            for run in range(1, runs + 1):
                for source, target in (("old", "new"), ("new", "old")):
                    moves.append(hand_move(vm, run, source, target, kind, max_downtime_ms))
                    say(f"bench: {_describe(moves[-1])}")
    finally:
        for host in ("old", "new"):
            guest.remove_vm(host, vm.name)
            lab.run(host, ["rm", "-f", "--", vm.disk_path], check=False, timeout=30)
        baseline.switch_core("old")

    return report(moves, runs, noop_ups)


def _describe(move: MoveResult) -> str:
    return (
        f"{move.kind} run {move.run} {move.source}->{move.target}: gap {move.gap_ms:.0f} ms "
        f"({move.lost_pings} pings lost), at the switch {move.switch_gap_ms} ms (paused "
        f"{move.pause_ms} ms), QEMU downtime {move.qemu_downtime_ms} ms, "
        f"total {move.total_s:.2f} s, lost writes {move.lost_writes}"
    )


def report(moves: list[MoveResult], runs: int, noop_ups: list[float]) -> int:
    say(
        table(
            [
                "kind",
                "run",
                "move",
                "gap_ms",
                "switch_ms",
                "pause_ms",
                "lost",
                "qemu_ms",
                "migrate_s",
                "total_s",
                "writes",
            ],
            [
                [
                    m.kind,
                    m.run,
                    f"{m.source}->{m.target}",
                    round(m.gap_ms),
                    m.switch_gap_ms,
                    m.pause_ms,
                    m.lost_pings,
                    m.qemu_downtime_ms,
                    m.migrate_s,
                    m.total_s,
                    m.lost_writes,
                ]
                for m in moves
            ],
        )
    )

    def p50(kind: str, attribute: str) -> float:
        return median([getattr(m, attribute) for m in moves if m.kind == kind])

    def most(kind: str, attribute: str) -> float:
        return max(float(getattr(m, attribute) or 0) for m in moves if m.kind == kind)

    gap, base_gap, tuned_gap = (p50(k, "gap_ms") for k in ("glidepath", "baseline", "tuned"))
    switch, base_switch = p50("glidepath", "switch_gap_ms"), p50("baseline", "switch_gap_ms")
    total, base_total, tuned_total = (p50(k, "total_s") for k in ("glidepath", "baseline", "tuned"))
    noop = median(noop_ups)
    kinds = ("glidepath", "baseline", "tuned")
    say(
        table(
            ["median of", *kinds, "ratio to tuned"],
            [
                ["longest gap, ms", gap, base_gap, tuned_gap, gap / tuned_gap],
                ["longest gap, max, ms", *(most(k, "gap_ms") for k in kinds), None],
                # The part of it a move's switch-over makes: the gap overlapping libvirt's
                # pause (source suspended -> target resumed), and that pause.
                [
                    "gap at the switch, ms",
                    *(p50(k, "switch_gap_ms") for k in kinds),
                    switch / p50("tuned", "switch_gap_ms"),
                ],
                ["pause (libvirt events), ms", *(p50(k, "pause_ms") for k in kinds), None],
                ["QEMU downtime, ms", *(p50(k, "qemu_downtime_ms") for k in kinds), None],
                ["migration, s", *(p50(k, "migrate_s") for k in kinds), None],
                ["total, s", total, base_total, tuned_total, total / tuned_total],
                # The engine's fixed cost, and its share of a move's `up` (ratio column).
                ["no-op up, s", noop, None, None, noop / total],
            ],
        )
    )
    encryption: dict[str, float] = {}
    if any(m.kind == "glidepath-direct" for m in moves):
        direct_gap, direct_total = (
            p50("glidepath-direct", "gap_ms"),
            p50("glidepath-direct", "total_s"),
        )
        say(
            table(
                ["median of", "tunnel (encrypted)", "direct (in clear)", "ratio"],
                [
                    ["longest gap, ms", gap, direct_gap, gap / direct_gap],
                    [
                        "migration, s",
                        p50("glidepath", "migrate_s"),
                        p50("glidepath-direct", "migrate_s"),
                        p50("glidepath", "migrate_s") / p50("glidepath-direct", "migrate_s"),
                    ],
                    ["total, s", total, direct_total, total / direct_total],
                ],
            )
        )
        encryption = {
            "direct_downtime_ms_p50": round(direct_gap),
            "direct_migrate_s_p50": round(p50("glidepath-direct", "migrate_s"), 2),
            "migrate_s_p50": round(p50("glidepath", "migrate_s"), 2),
            "direct_total_s_p50": round(direct_total, 2),
        }
    json_path = results_path("downtime", "json")
    save_json(json_path, {"runs": runs, "moves": [asdict(m) for m in moves], "noop_up_s": noop_ups})
    png_path = json_path.with_suffix(".png")
    plot(moves, png_path)
    say(f"bench: {len(moves)} moves ({runs} round trips of each kind); {json_path}, {png_path}")
    lost = sum(m.lost_writes for m in moves)
    if lost:
        say(f"bench: WARNING: {lost} guest writes lost")
    say(
        key_values(
            {
                "downtime_ms_p50": round(gap),
                "baseline_downtime_ms_p50": round(base_gap),
                "total_s_p50": round(total, 2),
                "baseline_total_s_p50": round(base_total, 2),
                "overhead_ratio": round(total / base_total, 2),
                "noop_up_s_p50": round(noop, 2),
                "switch_gap_ms_p50": round(switch),
                "baseline_switch_gap_ms_p50": round(base_switch),
                "tuned_downtime_ms_p50": round(tuned_gap),
                "tuned_total_s_p50": round(tuned_total, 2),
                "tuned_overhead_ratio": round(total / tuned_total, 2),
                **encryption,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
