"""A throwaway SSH host for engine tests that do not need the whole lab: a network
namespace with one veth to the root namespace and an sshd of its own.

Everything it starts is recorded and removed by PID/name on exit. The veth carries a
unique-local IPv6 /64 of our own, so it never overlaps the lab's IPv4 ranges (the lab
refuses to build while the root namespace holds an address inside them).

Options for tests that must prove what reached the host: `log_level="VERBOSE"` makes sshd
log every connection (before authentication, so a refused host key shows too) to
`SshHost.log_path`; `addresses=N` gives the namespace N addresses sshd listens on, so a
stack can name N distinct hosts that all are this one sshd.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

ROOT_ADDRESS = "fd67:6c69:6465:7061::1"
HOST_ADDRESS = "fd67:6c69:6465:7061::2"
_instances = itertools.count()


@dataclass(frozen=True)
class SshHost:
    namespace: str
    address: str
    private_key: str
    known_hosts: str
    #: Every address sshd listens on (the first is `address`).
    addresses: tuple[str, ...] = ()
    #: sshd's own log (with `log_level`), else None.
    log_path: Path | None = None
    #: The config file sshd was started with (`sshd -f`).
    config_path: Path | None = None

    def log(self) -> str:
        """What sshd logged so far ("" without a log)."""
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""

    def run(self, *argv: str) -> str:
        """Run a command inside the namespace from the test (not over SSH)."""
        return subprocess.run(
            ["ip", "netns", "exec", self.namespace, *argv],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


def host_address(index: int) -> str:
    """The namespace's index-th address (0 is HOST_ADDRESS)."""
    return f"fd67:6c69:6465:7061::{index + 2:x}"


@contextmanager
def sshd_netns(
    workdir: Path, *, log_level: str | None = None, addresses: int = 1
) -> Iterator[SshHost]:
    instance = next(_instances)
    suffix = f"-{instance}" if instance else ""  # the first keeps its old name
    namespace = f"gpt{os.getpid() % 100000}{suffix}"
    veth = f"gpt{os.getpid() % 100000}{suffix}r"
    listen = [host_address(i) for i in range(addresses)]
    log_path = workdir / "sshd.log" if log_level else None
    workdir.mkdir(parents=True, exist_ok=True)
    host_key, client_key = workdir / "host_ed25519", workdir / "client_ed25519"
    for key in (host_key, client_key):
        if not key.exists():
            _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
    (workdir / "authorized_keys").write_text((client_key.with_suffix(".pub")).read_text())
    config = workdir / "sshd_config"
    pidfile = workdir / "sshd.pid"
    config.write_text(
        "\n".join(
            [
                *(f"ListenAddress {address}" for address in listen),
                f"HostKey {host_key}",
                f"PidFile {pidfile}",
                f"AuthorizedKeysFile {workdir / 'authorized_keys'}",
                "PermitRootLogin prohibit-password",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                *([f"LogLevel {log_level}"] if log_level else []),
                "",
            ]
        )
    )
    Path("/run/sshd").mkdir(exist_ok=True)
    sshd_pid: int | None = None
    try:
        _run("ip", "netns", "add", namespace)
        _run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", namespace)
        _run("ip", "addr", "add", f"{ROOT_ADDRESS}/64", "dev", veth, "nodad")
        _run("ip", "link", "set", veth, "up")
        for address in listen:
            _run("ip", "-n", namespace, "addr", "add", f"{address}/64", "dev", "eth0", "nodad")
        _run("ip", "-n", namespace, "link", "set", "eth0", "up")
        _run("ip", "-n", namespace, "link", "set", "lo", "up")
        log_args = ["-E", str(log_path)] if log_path else []
        _run("ip", "netns", "exec", namespace, "/usr/sbin/sshd", "-f", str(config), *log_args)
        for _ in range(50):  # bounded: 5 s
            if pidfile.exists() and pidfile.read_text().strip():
                break
            time.sleep(0.1)
        sshd_pid = int(pidfile.read_text().strip())
        host_pub = (host_key.with_suffix(".pub")).read_text().split()
        yield SshHost(
            namespace=namespace,
            address=HOST_ADDRESS,
            private_key=client_key.read_text(),
            known_hosts="".join(f"{a} {host_pub[0]} {host_pub[1]}\n" for a in listen),
            addresses=tuple(listen),
            log_path=log_path,
            config_path=config,
        )
    finally:
        if sshd_pid is not None:
            with suppress(ProcessLookupError):
                os.kill(sshd_pid, signal.SIGTERM)
        # The listener's sessions outlive it while a client (a cached provider session)
        # keeps them open: end every process still in the namespace, by PID.
        _end_processes_in(namespace)
        subprocess.run(["ip", "link", "del", veth], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=30)


def _end_processes_in(namespace: str) -> None:
    """TERM, then (after a bounded wait) KILL, each process in the namespace we made."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        listed = subprocess.run(
            ["ip", "netns", "pids", namespace], capture_output=True, text=True, timeout=30
        )
        pids = [int(word) for word in listed.stdout.split() if word.isdigit()]
        if not pids:
            return
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
            time.sleep(0.1)
