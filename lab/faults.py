"""Faults to inject into the lab while glidepath moves a VM, and how to undo each.

Every change here is inside a lab namespace and is undone by its counterpart; processes
are signalled by PID only (read from a pid file or /proc), never by name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from lab import topology as t
from lab.lifecycle import LabError, libvirtd_pid, start_libvirtd
from lab.proc import run

__all__ = [
    "block_ssh",
    "children",
    "cut_migration",
    "kill_libvirt_clients",
    "kill_libvirtd",
    "kill_tunnel_ssh",
    "libvirtd_pid",
    "link_down",
    "link_up",
    "restore_migration",
    "start_libvirtd",
    "tunnel_keeper_pid",
    "tunnel_ssh_pids",
    "unblock_ssh",
]


def children(pid: int) -> list[int]:
    """Direct children of a process (all lab namespaces share the machine's PID space)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def tunnel_keeper_pid(host: str, peer: str, tun: int = 2) -> int:
    """The keeper of tunN on `host` (toward `peer`), from its pid file in the host."""
    address = t.hypervisor(peer).address
    path = f"/run/glidepath/tunnel-tun{tun}-{address}.pid"
    text = run(host, ["cat", "--", path], timeout=30).stdout
    return int(text.split()[0])


def tunnel_ssh_pids(host: str, peer: str, tun: int = 2) -> list[int]:
    """The `ssh -w` processes the keeper on `host` runs (one while the link is kept)."""
    keeper = tunnel_keeper_pid(host, peer, tun)
    return [p for p in children(keeper) if _cmdline(p)[:1] == ["ssh"]]


def kill_tunnel_ssh(host: str, peer: str, tun: int = 2) -> int:
    """SIGKILL the `ssh -w` the keeper on `host` runs; -> the killed PID."""
    keeper = tunnel_keeper_pid(host, peer, tun)
    ssh = tunnel_ssh_pids(host, peer, tun)
    if len(ssh) != 1:
        raise LabError(f"keeper {keeper} on {host} has {len(ssh)} ssh children, expected 1")
    os.kill(ssh[0], signal.SIGKILL)
    return ssh[0]


def kill_libvirtd(host: str, timeout: float = 10) -> int:
    """SIGKILL a hypervisor's libvirtd (its QEMUs keep running); -> the killed PID."""
    pid = libvirtd_pid(host)
    if pid is None:
        raise LabError(f"libvirtd on {host} is not running")
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while libvirtd_pid(host) == pid:
        if time.monotonic() > deadline:
            raise LabError(f"libvirtd {pid} on {host} survived SIGKILL for {timeout} s")
        time.sleep(0.05)
    return pid


def libvirt_client_pids(host: str) -> list[int]:
    """The `virt-ssh-helper` processes on `host`: each carries one SSH client's libvirt
    connection (glidepath's provider reaches libvirtd through one)."""
    net_ns = os.stat(t.hypervisor(host).net_ns).st_ino
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        argv = _cmdline(int(entry.name))
        if not argv or Path(argv[0]).name != "virt-ssh-helper":
            continue
        try:
            if os.stat(entry / "ns" / "net").st_ino == net_ns:
                found.append(int(entry.name))
        except OSError:
            continue  # it ended meanwhile
    return found


def kill_libvirt_clients(host: str) -> list[int]:
    """SIGKILL every libvirt client connection's helper on `host`: the libvirt calls of
    whoever was connected fail at once (an error in the middle of their work); libvirtd
    and its QEMUs go on. -> the killed PIDs."""
    pids = libvirt_client_pids(host)
    if not pids:
        raise LabError(f"no libvirt client connection (virt-ssh-helper) on {host}")
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


def link_down(host: str) -> None:
    """Cut a hypervisor off: its veth's core end goes down (every path to it is via core)."""
    run(t.CORE, ["ip", "link", "set", "dev", t.hypervisor(host).core_link, "down"], timeout=30)


def link_up(host: str) -> None:
    run(t.CORE, ["ip", "link", "set", "dev", t.hypervisor(host).core_link, "up"], timeout=30)


def _ssh_rule(action: str) -> list[str]:
    target = ["REJECT", "--reject-with", "tcp-reset"] if action == "reject" else ["DROP"]
    # Every packet, not only connection attempts: glidepath may hold a session open
    # already (a move opens the router's connection while it copies).
    return ["INPUT", "-p", "tcp", "--dport", "22", "-m", "comment", "--comment",
            "glidepath-lab fault", "-j", *target]  # fmt: skip


def block_ssh(host: str, action: str = "reject") -> None:
    """SSH to `host` stops working: every packet to its port 22 is answered with a reset
    (reject: open sessions break, new ones are refused) or dropped (drop: open sessions
    hang, new ones time out)."""
    if action not in ("reject", "drop"):
        raise ValueError(action)
    run(host, ["iptables", "-w", "-I", *_ssh_rule(action)], timeout=30)


def unblock_ssh(host: str, action: str = "reject") -> None:
    run(host, ["iptables", "-w", "-D", *_ssh_rule(action)], timeout=30)


def _migration_rules() -> list[list[str]]:
    low, high = t.MIGRATION_PORTS
    ports = f"{low}:{high}"
    tag = ["-m", "comment", "--comment", "glidepath-lab fault"]
    return [
        ["INPUT", "-p", "tcp", "--dport", ports, *tag, "-j", "DROP"],
        ["OUTPUT", "-p", "tcp", "--sport", ports, *tag, "-j", "DROP"],
    ]


def _kill_sockets(host: str, side: str) -> str:
    """Close `host`'s TCP sockets on the migration ports (`side`: sport or dport), as a
    broken link does once TCP gives up (`ss -K`: the kernel's sock_destroy, no process
    is signalled). -> ss's list of what it closed."""
    low, high = t.MIGRATION_PORTS
    argv = ["ss", "-K", "-t", "-n", side, ">=", f":{low}", side, "<=", f":{high}"]
    return run(host, argv, timeout=30).stdout


def cut_migration(target: str, source: str) -> str:
    """The migration streams between `source` and `target` break and stay broken: the
    target drops its migration ports (QEMU's memory stream and the NBD disk copy listen
    there), and the open connections on them are closed on both hosts, so both QEMUs see
    the break at once (a dropped link alone leaves TCP retrying for minutes, and a link
    back within that time is no break at all). -> what was closed, for the test's log."""
    for rule in _migration_rules():
        run(target, ["iptables", "-w", "-I", *rule], timeout=30)
    return _kill_sockets(target, "sport") + _kill_sockets(source, "dport")


def restore_migration(target: str) -> None:
    for rule in _migration_rules():
        run(target, ["iptables", "-w", "-D", *rule], timeout=30)
