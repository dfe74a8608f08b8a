"""The first end-to-end test: the real Pulumi CLI (built from Go modules) applies a
dynamic resource from providers/ over real SSH into a namespace this test creates."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pulumi import automation as auto

from engine import STATE_DIR, engine_env
from engine.workspace import inline_stack
from providers.sysctl import Sysctl
from tests.support.netns_sshd import SshHost, sshd_netns

pytestmark = [pytest.mark.engine]


@pytest.fixture
def ssh_host(tmp_path: Path):
    with sshd_netns(tmp_path / "ssh") as host:
        yield host


#: How the engine marks a secret value in a decrypted deployment.
SECRET_SIG = ("4dabf18193072939515e22adb298388d", "1b47061264138c4ac30d75fd1eb44270")


def _found(node: Any, needle: str, skip_secrets: bool = True, path: str = "") -> list[str]:
    """Where `needle` occurs in `node` (by default: other than inside a secret value)."""
    if isinstance(node, dict):
        if skip_secrets and node.get(SECRET_SIG[0]) == SECRET_SIG[1]:
            return []
        return [p for k, v in node.items() for p in _found(v, needle, skip_secrets, f"{path}.{k}")]
    if isinstance(node, list):
        return [
            p for i, v in enumerate(node) for p in _found(v, needle, skip_secrets, f"{path}[{i}]")
        ]
    # Key lines are joined however many times the text was JSON-encoded.
    if isinstance(node, str) and needle in re.sub(r"\\\\*n|\n", "", node):
        return [path]
    return []


def _configure(stack: auto.Stack, host: SshHost) -> None:
    stack.set_config("ssh.private_key", auto.ConfigValue(host.private_key, secret=True), path=True)
    stack.set_config("ssh.known_hosts", auto.ConfigValue(host.known_hosts), path=True)


def test_sysctl_up_preview_destroy(ssh_host: SshHost, tmp_path: Path) -> None:
    assert ssh_host.run("sysctl", "-n", "net.ipv4.ip_forward").strip() == "0"

    def program() -> None:
        Sysctl(
            "ip-forward",
            host={"name": "t", "address": ssh_host.address},
            key="net.ipv4.ip_forward",
            value="1",
        )

    stack = inline_stack(f"sysctl-{os.getpid()}", "glidepath", program, tmp_path)
    try:
        _configure(stack, ssh_host)
        output: list[str] = []
        up = stack.up(on_output=output.append)
        assert up.summary.result == "succeeded"
        assert up.summary.resource_changes == {"create": 2}
        assert ssh_host.run("sysctl", "-n", "net.ipv4.ip_forward").strip() == "1"

        preview = stack.preview(diff=True)
        assert preview.change_summary == {"same": 2}

        # The private key is a secret: never in plain state or in what the CLI printed.
        # (export_stack() decrypts, so read what the backend really stored.)
        key_body = "".join(ssh_host.private_key.splitlines()[1:-1])
        state_files = list(STATE_DIR.glob(f".pulumi/stacks/glidepath/{stack.name}.json*"))
        assert state_files
        stored = "".join(f.read_text() for f in state_files if f.suffix == ".json")
        assert '"ciphertext"' in stored
        assert key_body[200:260] not in stored.replace("\\n", "")
        assert key_body[200:260] not in "".join(output)
        # The Automation API exports with --show-secrets: there the key may appear, but
        # only inside values marked secret. Plain `pulumi stack export` shows none of it.
        deployment = stack.export_stack().deployment or {}
        assert _found(deployment, key_body[200:260], skip_secrets=False)  # the check works
        assert _found(deployment, key_body[200:260]) == []
        exported = subprocess.run(
            ["pulumi", "stack", "export", "--stack", stack.name],
            cwd=tmp_path,
            env=engine_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        assert "ciphertext" in exported
        assert key_body[200:260] not in exported.replace("\\n", "")
        assert key_body[200:260] not in exported

        destroy = stack.destroy()
        assert destroy.summary.result == "succeeded"
        # Deleting restores what the host had before.
        assert ssh_host.run("sysctl", "-n", "net.ipv4.ip_forward").strip() == "0"
    finally:
        stack.workspace.remove_stack(stack.name, force=True)
