"""The host bootstrap is pulumi-command's `remote.Command`, run by the real engine against
a real sshd: it allows tunnels in that sshd's config and reloads it, checks the packages,
pins the host key, and runs once (a second `up` changes nothing).

The host is a throwaway namespace with its own sshd (tests/support/netns_sshd.py), whose
config starts without `PermitTunnel`, as a stock Debian sshd_config does.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pulumi import automation as auto
from pulumi_command import remote

from components.config import HostConfig
from components.host import connection
from engine.workspace import inline_stack
from lab.fixtures import require_lab
from providers import transport
from providers.plans import host_bootstrap
from tests.support.netns_sshd import SshHost, sshd_netns

pytestmark = [pytest.mark.engine, pytest.mark.lab]


@pytest.fixture
def ssh_host(tmp_path: Path) -> Iterator[SshHost]:
    require_lab()
    with sshd_netns(tmp_path / "ssh") as host:
        yield host


def _effective(host: SshHost, keyword: str) -> str:
    assert host.config_path is not None
    dump = host.run("/usr/sbin/sshd", "-T", "-f", str(host.config_path))
    return next(line.split()[1] for line in dump.splitlines() if line.split()[0] == keyword)


def _stack(host: SshHost, known_hosts: str, tmp_path: Path, name: str) -> auto.Stack:
    assert host.config_path is not None
    config = HostConfig(address=host.address, sshd_config=str(host.config_path)).named("t")
    access = {"private_key": host.private_key, "known_hosts": known_hosts}

    def program() -> None:
        remote.Command(
            "t-bootstrap",
            connection=connection(config, access),
            create=host_bootstrap.command(config.sshd_config),
        )

    return inline_stack(f"{name}-{os.getpid()}", "glidepath", program, tmp_path)


def test_bootstrap_allows_tunnels_and_runs_once(ssh_host: SshHost, tmp_path: Path) -> None:
    assert _effective(ssh_host, "permittunnel") == "no"
    assert ssh_host.config_path is not None
    pidfile = ssh_host.config_path.parent / "sshd.pid"
    pid = pidfile.read_text().strip()
    stack = _stack(ssh_host, ssh_host.known_hosts, tmp_path, "bootstrap")
    try:
        output: list[str] = []
        up = stack.up(on_output=output.append)
        assert up.summary.result == "succeeded"
        assert up.summary.resource_changes == {"create": 2}
        printed = "".join(output)
        assert "packages: ok" in printed
        assert "sshd: PermitTunnel yes (set, sshd reloaded)" in printed
        assert _effective(ssh_host, "permittunnel") == "yes"
        # sshd re-read its config in place (SIGHUP): same daemon, still answering.
        assert pidfile.read_text().strip() == pid
        endpoint = transport.Endpoint("t", ssh_host.address)
        credentials = transport.SshCredentials(ssh_host.private_key, ssh_host.known_hosts)
        assert transport.SshSession(endpoint, credentials).run(["true"]).ok

        again = stack.up(on_output=output.append)
        assert again.summary.resource_changes == {"same": 2}
    finally:
        stack.destroy()
        stack.workspace.remove_stack(stack.name, force=True)


def test_bootstrap_refuses_a_host_with_another_key(ssh_host: SshHost, tmp_path: Path) -> None:
    # Another ed25519 key under the host's name: what a reinstalled (or spoofed) host shows.
    other = tmp_path / "other_host_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True, timeout=30
    )
    keytype, base64 = other.with_suffix(".pub").read_text().split()[:2]
    known_hosts = f"{ssh_host.address} {keytype} {base64}\n"
    stack = _stack(ssh_host, known_hosts, tmp_path, "bootstrap-wrong-key")
    try:
        with pytest.raises(auto.CommandError) as failed:
            stack.up()
        assert "host key" in str(failed.value).lower()
        assert _effective(ssh_host, "permittunnel") == "no"  # nothing ran on the host
    finally:
        stack.destroy()
        stack.workspace.remove_stack(stack.name, force=True)
