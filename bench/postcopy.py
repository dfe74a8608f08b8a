"""Post-copy against pre-copy, for an idle guest and for one that dirties memory fast, in
the same run on the lab (issue 18).

    .venv/bin/python bench/postcopy.py --runs 1

Four kinds of move, each N round trips old -> new -> old through `pulumi up` (one lab
VM, 256 MiB RAM, 64 MiB disk, memory and disks through the tunnel):

- idle/pre, idle/post: the lab guest as it is (its disk writer only);
- dirty/pre, dirty/post: the same guest rewriting 64 MiB of random bytes in its RAM
  without pause (`gp.dirty=64`, lab/guest.py), as a busy database does;
- pre: `postcopy: never`; post: `postcopy: after_first_pass`.

Every move has the same pre-copy limit (`--bandwidth-mib-s`, 32 by default) and max
downtime (300 ms, QEMU's default: fewer passes; lab/README.md, "Slow memory passes"), so
the four differ in the guest and the mode only. Per move: the longest gap in the client's
pings to the VM (every 10 ms), the `pulumi up` wall time, and the guest's lost disk
writes. A table, bench/results/postcopy-<time>.json, and a last line of key=value pairs.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

if not __package__:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import lab
from bench.common import key_values, median, pulumi_cli, results_path, save_json, say, table
from bench.downtime import lost_writes, wait_answers
from lab.guest import console_tails
from lab.probe import start_probe
from lab.stacks import GeneratedStack, generated_stack, lab_vm

VM, VIF = "blog", 0
MEMORY_MIB = 256
DIRTY_MIB = 64
PROBE_S = 400.0
GUESTS = ("dirty", "idle")  # the dirtying guest first: it is what the bench is for
MODES = {"pre": "never", "post": "after_first_pass"}


@dataclass
class Move:
    guest: str  # idle or dirty
    mode: str  # pre or post
    run: int
    source: str
    target: str
    gap_ms: float
    lost_pings: int
    total_s: float
    migrate_s: float
    postcopy: bool  # the move did switch to post-copy
    lost_writes: int
    answers_after: bool  # the VM answered on the target afterwards
    failed: str = ""  # the `up`'s error, when it failed

    @property
    def kind(self) -> str:
        return f"{self.guest}/{self.mode}"


def running_on(vm: str) -> list[str]:
    return [
        host
        for host in ("old", "new")
        if vm in lab.run(host, ["virsh", "list", "--name", "--state-running"]).stdout.split()
    ]


def one_move(
    stack: GeneratedStack, guest: str, mode: str, run: int, source: str, target: str
) -> Move:
    disk = stack.disks()[0]
    stack.move(VM, target)
    ip = lab_vm(VM, VIF, target)["ip"]
    running = start_probe(ip, PROBE_S)
    started = time.monotonic()
    failed = ""
    try:
        total, lines = pulumi_cli(stack.stack.name, "up", "--yes", "--skip-preview")
        # What the move said of its memory passes (not converging, the switch, the end).
        for _, line in lines:
            if f"{VM}: " in line and any(
                word in line for word in ("not converging", "post-copy", "moved")
            ):
                say(f"  {line.strip()[-160:]}")
    except SystemExit as err:  # pulumi_cli's report of a failed `up`
        total, failed = time.monotonic() - started, str(err)
    finally:
        timeline = running.stop()
    if failed:
        say(f"bench: {guest}/{mode} {source}->{target}: up failed:\n{failed[-1500:]}")
        say(console_tails([VM], ["old", "new"]))
        why = [line for line in failed.splitlines() if "Error: " in line] or [failed]
        writes = lost_writes(target, disk) if target in running_on(VM) else -1
        gap, lost = timeline.longest_gap_ms, timeline.lost
        return Move(guest, mode, run, source, target, gap, lost, total, float("nan"), False,
                    writes, False, why[0].strip()[:300])  # fmt: skip
    migration = stack.outputs()["last_migrations"][VM]
    try:
        wait_answers(ip, 30)
        answers = True
    except SystemExit:
        answers = False  # the TCG guest's own trouble (lab/README.md): said in the table
    return Move(
        guest,
        mode,
        run,
        source,
        target,
        timeline.longest_gap_ms,
        timeline.lost,
        total,
        float(migration["seconds"]),
        bool(migration.get("postcopy")),
        lost_writes(target, disk),
        answers,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2, help="round trips of each kind")
    parser.add_argument(
        "--bandwidth-mib-s", type=int, default=32, help="every move's pre-copy limit (MiB/s)"
    )
    args = parser.parse_args()
    runs = max(1, args.runs)
    say("bench: bringing the lab up")
    lab.up()
    moves: list[Move] = []
    for guest in GUESTS:
        for mode, setting in MODES.items():
            spec = lab_vm(
                VM,
                VIF,
                "old",
                memory_mib=MEMORY_MIB,
                migration={
                    "max_downtime_ms": 300,
                    "bandwidth_mib_s": args.bandwidth_mib_s,
                    "postcopy": setting,
                    "timeout_s": 300,
                },
            )
            if guest == "dirty":
                spec["boot"]["cmdline"] += f" gp.dirty={DIRTY_MIB}"
            say(f"bench: {guest}/{mode}: {runs} round trips, postcopy: {setting}")
            with generated_stack(f"bench-postcopy-{guest}-{mode}", {VM: spec}) as stack:
                stack.echo = False
                if stack.up().summary.result != "succeeded":
                    raise SystemExit("bench: the first pulumi up failed")
                wait_answers(spec["ip"])
                time.sleep(3)  # the dirtier's source buffer is written before GP-READY
                for run in range(1, runs + 1):
                    for source, target in (("old", "new"), ("new", "old")):
                        move = one_move(stack, guest, mode, run, source, target)
                        moves.append(move)
                        say(f"bench: {describe(move)}")
                        if not move.answers_after:
                            break
                    else:
                        continue
                    break
    return report(moves, runs, args.bandwidth_mib_s)


def describe(move: Move) -> str:
    return (
        f"{move.kind} run {move.run} {move.source}->{move.target}: gap {move.gap_ms:.0f} ms "
        f"({move.lost_pings} pings lost), total {move.total_s:.2f} s, migration "
        f"{move.migrate_s:.2f} s, post-copy {move.postcopy}, lost writes {move.lost_writes}"
        + ("" if move.answers_after else ", NO ANSWER afterwards")
        + (f", FAILED: {move.failed}" if move.failed else "")
    )


def report(moves: list[Move], runs: int, bandwidth: int) -> int:
    say(
        table(
            ["kind", "run", "move", "gap_ms", "lost", "migrate_s", "total_s", "postcopy", "writes"],
            [
                [
                    m.kind,
                    m.run,
                    f"{m.source}->{m.target}",
                    round(m.gap_ms),
                    m.lost_pings,
                    m.migrate_s,
                    m.total_s,
                    m.postcopy,
                    m.lost_writes,
                ]
                for m in moves
            ],
        )
    )

    def p50(kind: str, attribute: str) -> float:
        return median([getattr(m, attribute) for m in moves if m.kind == kind])

    rows = []
    pairs: dict[str, float | int | str] = {}
    for guest in GUESTS:
        pre, post = f"{guest}/pre", f"{guest}/post"
        rows.append([f"{guest}: longest gap, ms", p50(pre, "gap_ms"), p50(post, "gap_ms")])
        rows.append([f"{guest}: total, s", p50(pre, "total_s"), p50(post, "total_s")])
        pairs |= {
            f"{guest}_pre_gap_ms_p50": round(p50(pre, "gap_ms")),
            f"{guest}_post_gap_ms_p50": round(p50(post, "gap_ms")),
            f"{guest}_pre_total_s_p50": round(p50(pre, "total_s"), 2),
            f"{guest}_post_total_s_p50": round(p50(post, "total_s"), 2),
        }
    say(table(["median of", "pre-copy", "post-copy"], rows))
    json_path = results_path("postcopy", "json")
    save_json(
        json_path, {"runs": runs, "bandwidth_mib_s": bandwidth, "moves": [asdict(m) for m in moves]}
    )
    say(f"bench: {len(moves)} moves; {json_path}")
    lost = sum(m.lost_writes for m in moves)
    broken = sum(not m.answers_after for m in moves)
    failed = sum(bool(m.failed) for m in moves)
    pairs |= {
        "moves": len(moves),
        "postcopy_moves": sum(m.postcopy for m in moves),
        "lost_writes": lost,
        "unanswered": broken,
        "failed_ups": failed,
    }
    say(key_values(pairs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
