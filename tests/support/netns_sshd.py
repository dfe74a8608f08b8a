"""A throwaway SSH host for engine tests that do not need the whole lab: a network
namespace with one veth to the root namespace and an sshd of its own.

Everything it starts is recorded and removed by PID/name on exit. The veth carries a
unique-local IPv6 /64 of our own, so it never overlaps the lab's IPv4 ranges (the lab
refuses to build while the root namespace holds an address inside them).
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class SshHost:
    namespace: str
    address: str
    private_key: str
    known_hosts: str

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


@contextmanager
def sshd_netns(workdir: Path) -> Iterator[SshHost]:
    namespace = f"gpt{os.getpid() % 100000}"
    veth = f"gpt{os.getpid() % 100000}r"
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
                f"ListenAddress {HOST_ADDRESS}",
                f"HostKey {host_key}",
                f"PidFile {pidfile}",
                f"AuthorizedKeysFile {workdir / 'authorized_keys'}",
                "PermitRootLogin prohibit-password",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
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
        _run("ip", "-n", namespace, "addr", "add", f"{HOST_ADDRESS}/64", "dev", "eth0", "nodad")
        _run("ip", "-n", namespace, "link", "set", "eth0", "up")
        _run("ip", "-n", namespace, "link", "set", "lo", "up")
        _run("ip", "netns", "exec", namespace, "/usr/sbin/sshd", "-f", str(config))
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
            known_hosts=f"{HOST_ADDRESS} {host_pub[0]} {host_pub[1]}\n",
        )
    finally:
        if sshd_pid is not None:
            with suppress(ProcessLookupError):
                os.kill(sshd_pid, signal.SIGTERM)
        subprocess.run(["ip", "link", "del", veth], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=30)
