"""The tunnel keeper script and the pure tunnel decisions that are not argv plans."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from providers.facts.tunnel import Device, Keeper
from providers.plans import tunnel as plans

pytestmark = [pytest.mark.unit]

TUNNEL: plans.Tunnel = {
    "tun": 5,
    "user": "root",
    "peer": "198.18.2.2",
    "port": 22,
    "address": "198.18.105.1/24",
    "peer_address": "198.18.105.2/24",
}
ALIAS = plans.owner_alias("198.18.1.2", "198.18.2.2")
UP_HOST: Device = {
    "ifname": "tun5",
    "up": True,
    "addresses": ["198.18.105.1/24"],
    "admin_up": True,
    "persistent": True,
    "alias": ALIAS,
}
UP_PEER: Device = {**UP_HOST, "addresses": ["198.18.105.2/24"]}


def _keeper(tunnel: plans.Tunnel = TUNNEL, pid: int = 4200) -> Keeper:
    return {
        "pid": pid,
        "cmdline": ["/bin/bash", plans.SCRIPT_PATH, *plans.keeper_args(tunnel)],
        "members": [],
    }


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "tunnel-keeper"
    path.write_text(plans.keeper_script())
    path.chmod(0o755)
    return path


def test_script_is_valid_bash(script: Path) -> None:
    subprocess.run(["bash", "-n", str(script)], check=True)


def test_script_content_is_fixed() -> None:
    # No parameter can reach it: a tunnel's values go to the keeper as argv, never into the
    # file, so every tunnel installs the very same script. (Values no script line could
    # hold by chance: `root`, `22` or `5` might.)
    other: plans.Tunnel = {
        "tun": 219,
        "user": "gpuser",
        "peer": "192.0.2.77",
        "port": 2222,
        "address": "10.99.0.1/30",
        "peer_address": "10.99.0.2/30",
    }
    script = plans.plan_script(None).writes[0].content
    assert script.startswith("#!/bin/bash\n")
    values = [str(v) for v in other.values()]
    assert all(value in " ".join(plans.start_argv(other)) for value in values)
    assert [value for value in values if value in script] == []


@pytest.mark.parametrize(
    "args",
    [
        ["v1", "256", "root", "198.18.2.2", "22", "198.18.105.1/24", "true"],
        ["v1", "5;reboot", "root", "198.18.2.2", "22", "198.18.105.1/24", "true"],
        ["v1", "5", "root;reboot", "198.18.2.2", "22", "198.18.105.1/24", "true"],
        ["v1", "5", "-oProxyCommand=x", "198.18.2.2", "22", "198.18.105.1/24", "true"],
        ["v1", "5", "root", "$(reboot)", "22", "198.18.105.1/24", "true"],
        ["v1", "5", "root", "-oProxyCommand=x", "22", "198.18.105.1/24", "true"],
        ["v1", "5", "root", "198.18.2.2", "0", "198.18.105.1/24", "true"],
        ["v1", "5", "root", "198.18.2.2", "22", "198.18.105.1", "true"],
        ["v1", "5", "root", "198.18.2.2", "22", "198.18.105.1/24 x", "true"],
        ["v0", "5", "root", "198.18.2.2", "22", "198.18.105.1/24", "true"],
        ["v1", "5", "root", "198.18.2.2", "22", "198.18.105.1/24"],
    ],
)
def test_script_refuses_bad_arguments_before_doing_anything(script: Path, args: list[str]) -> None:
    result = subprocess.run(
        ["timeout", "5", str(script), *args], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "usage: tunnel-keeper" in result.stderr


def test_remote_command_is_built_by_the_one_quoting_point() -> None:
    words = shlex.split(plans.remote_command(TUNNEL))
    assert words == ["sh", "-c", plans.REMOTE_SCRIPT, "glidepath-tunnel", "tun5", "198.18.105.2/24"]


def test_start_argv_passes_each_value_as_one_element() -> None:
    argv = plans.start_argv(TUNNEL)
    assert argv[:3] == ("setsid", "-f", plans.SCRIPT_PATH)
    assert argv[3:9] == ("v1", "5", "root", "198.18.2.2", "22", "198.18.105.1/24")
    assert argv[9] == plans.remote_command(TUNNEL)
    assert len(argv) == 10


def test_files_are_named_by_tun_and_peer() -> None:
    assert plans.pid_file(TUNNEL) == "/run/glidepath/tunnel-tun5-198.18.2.2.pid"
    assert plans.lock_file(TUNNEL) == "/run/glidepath/tunnel-tun5-198.18.2.2.lock"
    assert plans.log_file(TUNNEL) == "/var/log/glidepath/tunnel-tun5-198.18.2.2.log"


def test_plan_script() -> None:
    fresh = plans.plan_script(None)
    assert [(w.path, w.mode) for w in fresh.writes] == [(plans.SCRIPT_PATH, "0755")]
    assert fresh.writes[0].content == plans.keeper_script()
    assert not fresh.commands
    assert not plans.plan_script(plans.keeper_script())
    edited = plans.plan_script(plans.keeper_script() + "echo hi\n")
    assert edited.writes[0].content == plans.keeper_script()
    assert "update" in edited.reason


def test_keeper_status() -> None:
    assert plans.keeper_status(TUNNEL, {"pid": None, "cmdline": None, "members": []}) == "absent"
    assert plans.keeper_status(TUNNEL, {"pid": 7, "cmdline": None, "members": []}) == "stale"
    assert plans.keeper_status(TUNNEL, _keeper()) == "current"
    moved: plans.Tunnel = {**TUNNEL, "address": "198.18.106.1/24"}
    assert plans.keeper_status(moved, _keeper()) == "outdated"
    # The keeper started directly (not through the shebang) is recognised too.
    direct = _keeper()
    assert direct["cmdline"] is not None
    direct["cmdline"] = direct["cmdline"][1:]
    assert plans.keeper_status(TUNNEL, direct) == "current"
    other_tun: plans.Tunnel = {**TUNNEL, "tun": 6}
    assert plans.keeper_status(other_tun, _keeper()) == "stale"


def test_tunnel_state() -> None:
    keeper = _keeper()
    assert plans.tunnel_state(TUNNEL, keeper, UP_HOST, UP_PEER, ALIAS) == "up"
    assert plans.tunnel_state(TUNNEL, keeper, UP_HOST, None, ALIAS) == "down"
    no_address: Device = {**UP_PEER, "addresses": []}
    assert plans.tunnel_state(TUNNEL, keeper, UP_HOST, no_address, ALIAS) == "down"
    link_down: Device = {**UP_HOST, "up": False}
    assert plans.tunnel_state(TUNNEL, keeper, link_down, UP_PEER, ALIAS) == "down"
    # Both ends up but nobody keeps them alive: down, so `up` restarts the keeper.
    gone: Keeper = {"pid": 4200, "cmdline": None, "members": []}
    assert plans.tunnel_state(TUNNEL, gone, UP_HOST, UP_PEER, ALIAS) == "down"
    # Up on a tunN that ssh made itself (it would take its routes along when ssh
    # restarts), or on a persistent one of another link: down, so `up` replaces it.
    made_by_ssh: Device = {**UP_PEER, "persistent": False, "alias": None}
    assert plans.tunnel_state(TUNNEL, keeper, UP_HOST, made_by_ssh, ALIAS) == "down"
    other_link: Device = {**UP_PEER, "alias": plans.owner_alias("198.18.1.2", "198.18.3.2")}
    assert plans.tunnel_state(TUNNEL, keeper, UP_HOST, other_link, ALIAS) == "down"


def test_actual_address() -> None:
    assert plans.actual_address("198.18.105.2/24", UP_PEER) == "198.18.105.2/24"
    assert plans.actual_address("198.18.105.2/24", None) is None
    assert plans.actual_address("198.18.105.2/24", {**UP_PEER, "addresses": []}) is None
    changed: Device = {**UP_PEER, "addresses": ["2001:db8::2/64", "198.18.105.3/24"]}
    assert plans.actual_address("198.18.105.2/24", changed) == "198.18.105.3/24"
