"""The control for issue 17: a whole server emptied by hand, with glidepath's migration
settings, to tell whether lab guests that break after their move break because of
glidepath or because of the move itself.

    .venv/bin/python bench/hand_server.py [--count 8] [--runs N] [--max-downtime-ms 100]
        [--glidepath] [--load pings+tcp|pings|tcp|none]

A generated lab stack starts COUNT VMs on `old` (as bench/concurrent.py does: vif<i>,
203.0.113.<i>). Then, per run, each way (old -> new, new -> old):
- by hand (the default): every VM, one after another, `virsh migrate-setmaxdowntime <vm>
  <ms>` then `virsh migrate --live --copy-storage-all --persistent --undefinesource
  --auto-converge` (glidepath's flags and pause; libvirt's own transport), its /32 put
  on its tap on the target. The router is not switched: the stack's egress path (the
  hosts' tunnel, the /29 through it on old, new's mark) carries every VM's traffic
  wherever it runs, as during glidepath's moves. No glidepath code runs.
- with --glidepath: the same VMs moved by one `pulumi up` (its schedule: moves.at_once).
In both, the client pings every VM every 10 ms and holds a checked TCP stream to each
during the way (lab/probe.py --tcp): the guests carry the same load as in concurrent.py
(--load picks a part of it, or none).
After each way, 8 s to settle, then per VM: what its console printed since the move
began (a new boot, an oops, list corruption, a virtio ring out of step:
lab.guest.TROUBLE), whether its disk writer still writes, its longest ping gap, whether
its stream broke, and libvirt's memory passes and pause for it (by hand).
Results: a table, bench/results/hand_server-<time>.json, a last line of key=value pairs.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

if not __package__:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import lab
from bench.common import key_values, median, pulumi_cli, results_path, save_json, say, table
from bench.concurrent import vm_spec, wait_answers
from lab import baseline, guest
from lab.probe import ProbeResult, RunningProbe, start_probe
from lab.proc import run
from lab.stacks import generated_stack

SETTLE_S = 8.0
PROBE_S = 300.0


@dataclass
class Moved:
    run: int
    way: str  # "old->new"
    how: str  # "hand" or "glidepath"
    vm: str
    passes: int | None  # libvirt's memory iterations (hand only: glidepath's job is its own)
    downtime_ms: float | None
    trouble: list[str]
    writing: bool  # its disk writer wrote after the way ended: it runs
    gap_ms: int  # its longest ping gap during the way
    tcp_broken: str  # what broke its TCP stream, if it broke


def jobinfo_passes(info: dict[str, str]) -> int | None:
    value = info.get("Iteration")
    return int(value) if value and value.isdigit() else None


def hand_way(
    vms: dict[str, dict[str, Any]], src: str, dst: str, max_downtime_ms: int
) -> dict[str, Any]:
    """Every VM from src to dst, one after another, each /32 put on its tap on dst as the
    blog's vif-route script does."""
    found: dict[str, Any] = {}
    for name, vm in vms.items():
        baseline.prepare_disk(name, src, dst)
        run(src, ["virsh", "migrate-setmaxdowntime", name, str(max_downtime_ms)])
        baseline.virsh_migrate(name, src, dst, timeout=600, auto_converge=True)
        run(dst, ["ip", "route", "replace", f"{vm['ip']}/32", "dev", vm["vif"]])
        found[name] = baseline.parse_jobinfo(
            run(dst, ["virsh", "domjobinfo", name, "--completed"], check=False).stdout
        )
    return found


def load_probe(ip: str, load: str) -> RunningProbe | None:
    """The client's traffic to one VM during a way: pings every 10 ms (the gap's
    resolution), a checked TCP stream, both, or none (`load`). Pings at the probe's
    floor of one a second stand in for "none of them" when only the stream runs."""
    if load == "none":
        return None
    interval = 0.01 if "pings" in load else 1.0
    return start_probe(ip, PROBE_S, interval=interval, tcp="tcp" in load)


def gap_ms(result: ProbeResult | None) -> int:
    return -1 if result is None else round(result.longest_gap_ms)


def tcp_error(result: ProbeResult | None) -> str:
    return str(result.tcp.get("error")) if result is not None and result.tcp_broken else ""


def writes_after(host: str, disk: str, since: float) -> bool:
    """Whether the guest's writer put a record on its disk at or after `since` (epoch):
    alive whatever its network does."""
    return any(r.epoch >= int(since) for r in guest.read_records(host, disk))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--max-downtime-ms", type=int, default=100)
    parser.add_argument("--glidepath", action="store_true", help="move with pulumi up instead")
    parser.add_argument(
        "--load",
        choices=["pings+tcp", "pings", "tcp", "none"],
        default="pings+tcp",
        help="what the client sends each VM during a way (default: as concurrent.py)",
    )
    args = parser.parse_args()
    lab.up()
    how = "glidepath" if args.glidepath else "hand"
    moved: list[Moved] = []
    vms = {f"move{i}": vm_spec(i, "old") for i in range(args.count)}
    for vm in vms.values():
        vm["migration"] = {**vm["migration"], "max_downtime_ms": args.max_downtime_ms}
    with generated_stack(f"bench-hand-server-{args.count}", vms) as stack:
        stack.echo = False
        pulumi_cli(stack.stack.name, "up", "--yes", "--skip-preview")
        # Booted, not booting: a boot's own output on the target is no trouble.
        wait_answers([vm["ip"] for vm in vms.values()])
        names = list(vms)
        for run_no in range(1, args.runs + 1):
            for src, dst in (("old", "new"), ("new", "old")):
                offsets = {name: guest.console_size(dst, name) for name in names}
                probes = {n: load_probe(vms[n]["ip"], args.load) for n in names}
                started = time.monotonic()
                infos: dict[str, Any] = {}
                failed = None
                try:
                    if args.glidepath:
                        for name in names:
                            stack.raw["config"]["glidepath:vms"][name]["host"] = dst
                        stack.save()
                        pulumi_cli(stack.stack.name, "up", "--yes", "--skip-preview")
                    else:
                        infos = hand_way(vms, src, dst, args.max_downtime_ms)
                except (SystemExit, Exception) as err:  # counted: the consoles say why
                    failed = str(err).splitlines()[0][:300]
                    say(f"bench: {how} {src}->{dst} run {run_no} FAILED: {failed}")
                took, ended = time.monotonic() - started, time.time()
                results = {name: running.stop() for name, running in probes.items() if running}
                time.sleep(SETTLE_S)
                for name in names:
                    console = guest.console_since(dst, name, offsets[name])
                    info = infos.get(name, {})
                    moved.append(
                        Moved(
                            run_no,
                            f"{src}->{dst}",
                            how,
                            name,
                            jobinfo_passes(info),
                            baseline.jobinfo_ms(info.get("Total downtime")),
                            guest.trouble(console),
                            writes_after(dst, vms[name]["disks"][0]["path"], ended),
                            gap_ms(results.get(name)),
                            tcp_error(results.get(name)),
                        )
                    )
                broken = [m.vm for m in moved[-len(names) :] if is_broken(m)]
                say(
                    f"bench: {how} {src}->{dst} run {run_no}: {took:.1f} s, broken: "
                    f"{', '.join(broken) or 'none'}"
                )
                if failed or broken:
                    say(guest.console_tails(broken or names, [dst], chars=800))
                    if args.glidepath and failed:
                        # Converge before the next way: the stack says where they are.
                        pulumi_cli(stack.stack.name, "up", "--yes", "--skip-preview")
        if not args.glidepath:
            # The VMs are back on old, where the stack has them: it removes them.
            pulumi_cli(stack.stack.name, "refresh", "--yes", "--skip-preview")
    return report(moved, how, args)


def is_broken(m: Moved) -> bool:
    return bool(m.trouble) or not m.writing or bool(m.tcp_broken)


def report(moved: list[Moved], how: str, args: argparse.Namespace) -> int:
    rows = [
        [
            m.run,
            m.way,
            m.vm,
            m.passes,
            m.downtime_ms,
            "yes" if m.writing else "NO",
            m.gap_ms,
            m.tcp_broken[:30] or "-",
            "; ".join(m.trouble)[:90] or "-",
        ]
        for m in moved
    ]
    say(
        table(
            ["run", "way", "vm", "passes", "pause ms", "writes", "gap ms", "tcp", "console"], rows
        )
    )
    broken = [m for m in moved if is_broken(m)]
    # A guest that broke stays broken (or reboots) into the next way: count the moves
    # that broke a guest that was whole before it.
    was_broken: set[str] = set()
    broke = []
    for m in moved:
        if is_broken(m) and m.vm not in was_broken:
            broke.append(m)
        was_broken.discard(m.vm)
        if is_broken(m):
            was_broken.add(m.vm)
    passes = [m.passes for m in moved if m.passes is not None]
    path = save_json(
        results_path("hand_server", "json"),
        {"how": how, "args": vars(args), "moves": [asdict(m) for m in moved]},
    )
    say(f"bench: results in {path}")
    say(
        key_values(
            {
                "how": how,
                "max_downtime_ms": args.max_downtime_ms,
                "moves": len(moved),
                "broken_after": len(broken),
                "moves_that_broke_a_guest": len(broke),
                "tcp_resets": sum(1 for m in moved if m.tcp_broken),
                "gap_ms_p50": median([float(m.gap_ms) for m in moved if m.gap_ms >= 0]),
                "gap_ms_max": max((m.gap_ms for m in moved if m.gap_ms >= 0), default=0),
                "passes_p50": median([float(p) for p in passes]),
                "passes_max": max(passes, default=0),
                "broke_passes": ",".join(str(m.passes) for m in broke) or "-",
            }
        )
    )
    return 1 if broken else 0


if __name__ == "__main__":
    raise SystemExit(main())
