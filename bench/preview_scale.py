"""How `pulumi preview` and `pulumi refresh` scale with VMs and hosts (issue 6).

    .venv/bin/python bench/preview_scale.py [--hosts 2,4,8] [--vms 8,16,32]

For each host count the lab grows to that many hypervisors (growing rebuilds it); for
each VM count a generated stack places that many VMs round-robin over the hosts (one /27,
vif0..vifN, one tunnel from every host to `old`, manual cutover so nothing is switched).
After `up`, three of every four domains are stopped by hand: defined, not running. Then
the CLI's `preview` and `refresh` are timed, and the SSH connections each opened to each
host are counted from the hosts' sshd logs ("Accepted publickey ... from" the control
address), so libvirt's own SSH connections count as well as ours.
Results: a table, bench/results/preview_scale-<time>.json and .png (time against VM
count, one line per host count), the slopes, and a last line of key=value pairs.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

if not __package__:
    # Run as a script: import from the repository, not from bench/ (whose concurrent.py
    # would shadow the standard library's `concurrent`).
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import lab
from bench.common import key_values, pulumi_cli, results_path, save_json, say, table
from lab import topology
from lab.stacks import generated_stack, lab_vm

CONTROL_ADDRESS = "198.18.0.1"  # the root namespace's end of the lab's control link
PREFIX = "203.0.113.0/27"


@dataclass
class Cell:
    hosts: int
    vms: int
    preview_s: float
    refresh_s: float
    # SSH connections opened from the control machine, per host (max over hosts).
    preview_connections: int
    refresh_connections: int
    running: int


def accepted(host: str) -> int:
    """SSH logins from the control machine in the host's sshd log so far."""
    log = topology.hypervisor(host).state_dir / "sshd.log"
    text = log.read_text(errors="replace") if log.exists() else ""
    return text.count(f"Accepted publickey for root from {CONTROL_ADDRESS} ")


def placements(hosts: list[str], vms: int) -> dict[str, dict[str, Any]]:
    """`vms` VMs round-robin over `hosts`, one address of the /27 each."""
    result = {}
    for index in range(vms):
        name = f"scale{index:02d}"
        vm = lab_vm(name, index, hosts[index % len(hosts)], memory_mib=96)
        # No kernel: the domain sits in its firmware (cheap under TCG); only its
        # definition and state matter to preview and refresh.
        vm.pop("boot", None)
        vm["ip"] = f"203.0.113.{index}"
        vm["disks"] = [{"path": f"/var/lib/libvirt/images/{name}.img", "size_mib": 1}]
        result[name] = vm
    return result


def network_config(config: dict[str, Any], hosts: list[str]) -> None:
    """Every host, a tunnel from each to old, one /27 routed to old (manual cutover)."""
    config["glidepath:hosts"] = {
        name: {
            "address": str(topology.hypervisor(name).address),
            "uplink": "br0",
            "sshd_config": str(topology.hypervisor(name).state_dir / "sshd_config"),
        }
        for name in hosts
    }
    config["glidepath:links"] = [
        {
            "hosts": ["old", name],
            "kind": "ssh-tun",
            "tun": 2 + index,
            "addresses": [f"198.18.{110 + index}.1/24", f"198.18.{110 + index}.2/24"],
        }
        for index, name in enumerate(h for h in hosts if h != "old")
    ]
    network = config["glidepath:networks"]["net0"]
    network["prefix"] = PREFIX
    network["upstream"] = "old"
    network["cutover"] = {"kind": "manual"}


def measure(host_names: list[str], vms: int) -> Cell:
    name = f"bench-scale-{len(host_names)}x{vms}"
    with generated_stack(name, placements(host_names, vms)) as stack:
        stack.echo = False
        network_config(stack.raw["config"], host_names)
        stack.save()
        pulumi_cli(name, "up", "--yes", "--skip-preview")
        # Defined, not all running: stop three of every four by hand, and let the
        # stack learn it (a refresh not timed).
        for index in range(vms):
            if index % 4:
                host = host_names[index % len(host_names)]
                lab.run(host, ["virsh", "destroy", f"scale{index:02d}"], check=False, timeout=30)
        pulumi_cli(name, "refresh", "--yes", "--skip-preview")
        counts = {h: accepted(h) for h in host_names}
        preview_s, _ = pulumi_cli(name, "preview")
        preview_connections = max(accepted(h) - counts[h] for h in host_names)
        counts = {h: accepted(h) for h in host_names}
        refresh_s, _ = pulumi_cli(name, "refresh", "--yes", "--skip-preview")
        refresh_connections = max(accepted(h) - counts[h] for h in host_names)
    cell = Cell(
        len(host_names),
        vms,
        preview_s,
        refresh_s,
        preview_connections,
        refresh_connections,
        running=(vms + 3) // 4,
    )
    say(
        f"bench: {cell.vms} VMs over {cell.hosts} hosts: preview {cell.preview_s:.2f} s "
        f"({cell.preview_connections} SSH connections per host), refresh {cell.refresh_s:.2f} s "
        f"({cell.refresh_connections} per host)"
    )
    return cell


def slope(cells: list[Cell], hosts: int, attribute: str) -> float:
    """Least-squares seconds per VM at this host count."""
    points = [(c.vms, getattr(c, attribute)) for c in cells if c.hosts == hosts]
    if len(points) < 2:
        return float("nan")
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


def plot(cells: list[Cell], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, attribute, title in (
        (axes[0], "preview_s", "pulumi preview"),
        (axes[1], "refresh_s", "pulumi refresh"),
    ):
        for hosts in sorted({c.hosts for c in cells}):
            points = sorted((c.vms, getattr(c, attribute)) for c in cells if c.hosts == hosts)
            ax.plot(*zip(*points, strict=True), marker="o", label=f"{hosts} hosts")
        ax.set_title(title)
        ax.set_xlabel("VM placements")
        ax.set_ylabel("seconds")
        ax.set_ylim(bottom=0)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", default="2,4,8", help="host counts, ascending")
    parser.add_argument("--vms", default="8,16,32", help="VM counts (at most 32: one /27)")
    args = parser.parse_args()
    host_counts = sorted(int(n) for n in args.hosts.split(","))
    vm_counts = sorted(int(n) for n in args.vms.split(","))
    if vm_counts[-1] > 32 or host_counts[0] < 2:
        raise SystemExit("bench: at most 32 VMs (one /27) and at least 2 hosts")
    cells: list[Cell] = []
    try:
        for hosts in host_counts:
            say(f"bench: lab with {hosts} hypervisors")
            lab.up(hosts=hosts)
            names = list(lab.status()["hosts"])[:hosts]
            for vms in vm_counts:
                cells.append(measure(names, vms))
    finally:
        if host_counts[-1] > 2:
            say("bench: back to a lab of 2 hypervisors")
            lab.down()
            lab.up(hosts=2)
    return report(cells)


def report(cells: list[Cell]) -> int:
    say(
        table(
            ["hosts", "vms", "preview_s", "refresh_s", "ssh/host preview", "ssh/host refresh"],
            [
                [
                    c.hosts,
                    c.vms,
                    c.preview_s,
                    c.refresh_s,
                    c.preview_connections,
                    c.refresh_connections,
                ]
                for c in cells
            ],
        )
    )
    slopes = {
        hosts: (slope(cells, hosts, "preview_s"), slope(cells, hosts, "refresh_s"))
        for hosts in sorted({c.hosts for c in cells})
    }
    say(
        table(
            ["hosts", "preview s/VM", "refresh s/VM"],
            [[hosts, p, r] for hosts, (p, r) in slopes.items()],
        )
    )
    json_path = results_path("preview_scale", "json")
    save_json(json_path, {"cells": [asdict(c) for c in cells], "slopes": slopes})
    png_path = json_path.with_suffix(".png")
    plot(cells, png_path)
    say(f"bench: {len(cells)} stacks, one run each; {json_path}, {png_path}")
    largest = max(cells, key=lambda c: (c.vms, c.hosts))
    say(
        key_values(
            {
                f"preview_s_{largest.vms}x{largest.hosts}": round(largest.preview_s, 2),
                f"refresh_s_{largest.vms}x{largest.hosts}": round(largest.refresh_s, 2),
                "ssh_connections_per_host": max(
                    max(c.preview_connections, c.refresh_connections) for c in cells
                ),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
