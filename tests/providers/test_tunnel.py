"""Tunnel against the lab: tun5 from `old` (runs ssh) to `new`, 198.18.105.1/24 and .2/24.

Not tun2, which the lab baseline and the demo stack use. Create and ping across; apply
again runs nothing; the ssh killed by PID comes back on its own; the peer's address
removed by hand reads as down and is repaired; the keeper killed by hand reads as down
and is restarted; new addresses; delete, delete again; a clash on the peer; a create that
fails stops what it started. `scrub` stops whatever a failed test left (by PID) and
removes tun5's pid, lock and log files.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from providers import tunnel as tunnel_module
from providers.facts import tunnel as facts
from providers.plans import PlanError
from providers.plans import tunnel as plans
from providers.transport import CommandResult
from providers.tunnel import TunnelProvider

pytestmark = [pytest.mark.lab]

HOST, PEER, TUN, DEV = "old", "new", 5, "tun5"
ADDRESS, PEER_ADDRESS = "198.18.105.1/24", "198.18.105.2/24"
PEER_IP = "198.18.2.2"
IDENTITY: plans.Tunnel = {
    "tun": TUN,
    "user": "root",
    "peer": PEER_IP,
    "port": 22,
    "address": ADDRESS,
    "peer_address": PEER_ADDRESS,
}


def _addresses(lab: Any, host: str) -> list[str] | None:
    out = lab.run(host, ["ip", "-j", "addr", "show", "dev", DEV], check=False)
    if out.returncode != 0:
        return None
    return [f"{a['local']}/{a['prefixlen']}" for a in json.loads(out.stdout)[0]["addr_info"]]


def _keeper_pid(lab: Any) -> int | None:
    out = lab.run(HOST, ["cat", plans.pid_file(IDENTITY)], check=False)
    return facts.process_pid(out.stdout) if out.returncode == 0 else None


def _ssh_child(lab: Any, keeper: int) -> int | None:
    out = lab.run(HOST, ["ps", "-o", "pid=,comm=", "--ppid", str(keeper)], check=False)
    pids = [
        int(w[0]) for w in (line.split() for line in out.stdout.splitlines()) if w[1:] == ["ssh"]
    ]
    return pids[0] if pids else None


TUN_ARG = f"-w {TUN}:{TUN} root@{PEER_IP}"
KEEPER_ARG = f"{plans.SCRIPT_PATH} v1 {TUN} root {PEER_IP} "


def _ours_running(lab: Any) -> list[int]:
    """Keeper and ssh of tun5 to new (any addresses), from the pid file's session."""
    pid = _keeper_pid(lab)
    if pid is None:
        return []
    ps = lab.run(HOST, ["ps", "-ww", "-o", "pid=,ppid=,args=", "--sid", str(pid)], check=False)
    members = facts.process_members(CommandResult(("ps",), ps.returncode, ps.stdout, ""))
    return [m["pid"] for m in members if TUN_ARG in m["args"] or KEEPER_ARG in m["args"]]


def _wait(what: str, done: Callable[[], bool], timeout: float) -> float:
    start = time.monotonic()
    while not done():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.2)
    return time.monotonic() - start


def scrub(lab: Any) -> None:
    targets = _ours_running(lab)
    if targets:
        lab.run(HOST, ["kill", "-KILL", "--", *map(str, targets)], check=False)
    for host in (HOST, PEER):  # persistent tun5 a failed test left (tun5 is this file's)
        lab.run(host, ["ip", "link", "del", "dev", DEV], check=False)
    _wait(
        f"{DEV} gone on {HOST} and {PEER}",
        lambda: _addresses(lab, HOST) is None and _addresses(lab, PEER) is None,
        15,
    )
    files = (plans.pid_file(IDENTITY), plans.lock_file(IDENTITY), plans.log_file(IDENTITY))
    lab.run(HOST, ["rm", "-f", "--", *files])


@pytest.fixture
def provider(lab: Any, lab_credentials: Any) -> Iterator[TunnelProvider]:
    scrub(lab)
    provider = TunnelProvider()
    provider.use_credentials(lab_credentials)
    yield provider
    scrub(lab)


def _inputs(provider: TunnelProvider, lab_endpoint: Any, **fields: Any) -> dict[str, Any]:
    news = {
        "host": lab_endpoint(HOST),
        "peer": lab_endpoint(PEER),
        "tun": float(TUN),  # as the engine sends numbers
        "address": ADDRESS,
        "peer_address": PEER_ADDRESS,
        **fields,
    }
    result = provider.check({}, news)
    assert not result.failures, result.failures
    return dict(result.inputs)


def _outs(result: Any) -> dict[str, Any]:
    assert result.outs is not None
    return dict(result.outs)


def _ping(lab: Any, address: str) -> None:
    lab.run(HOST, ["ping", "-c", "3", "-W", "1", address.split("/")[0]], timeout=20)


def test_lifecycle(provider: TunnelProvider, lab: Any, lab_endpoint: Any, applied: Any) -> None:
    inputs = _inputs(provider, lab_endpoint)
    created = provider.create(inputs)
    outs = _outs(created)
    assert created.id == "old:new:tun5"
    assert outs["state"] == "up"
    assert outs["actual"] == {
        "host": {"address": ADDRESS, "up": True},
        "peer": {"address": PEER_ADDRESS, "up": True},
    }
    keeper = outs["keeper_pid"]
    assert keeper == _keeper_pid(lab)
    assert (_addresses(lab, HOST), _addresses(lab, PEER)) == ([ADDRESS], [PEER_ADDRESS])
    _ping(lab, PEER_ADDRESS)

    # Apply again: the keeper runs with these parameters and both ends are up.
    applied.mark()
    provider.create(inputs)
    outs = _outs(provider.update(created.id, outs, inputs))
    assert applied.steps == []
    assert _outs(provider.read(created.id, outs)) == outs

    # Both ends are persistent devices marked as ours.
    details = json.loads(lab.run(PEER, ["ip", "-d", "-j", "link", "show", "dev", DEV]).stdout)[0]
    assert details["linkinfo"]["info_data"]["persist"] is True
    assert details["ifalias"] == "glidepath tunnel 198.18.1.2<->198.18.2.2"

    # The ssh dies (found by PID as the keeper's child): the keeper brings it back, and a
    # route through tun5 survives (the device, persistent, never went away).
    lab.run(HOST, ["ip", "route", "add", "198.18.106.0/24", "via", "198.18.105.2", "dev", DEV])
    ssh = _ssh_child(lab, keeper)
    assert ssh is not None
    killed = time.monotonic()
    lab.run(HOST, ["kill", "-KILL", str(ssh)])
    _wait("a new ssh", lambda: _ssh_child(lab, keeper) not in (None, ssh), 15)
    _wait(
        "the tunnel up again", lambda: _outs(provider.read(created.id, outs))["state"] == "up", 15
    )
    took = time.monotonic() - killed
    assert took <= 15
    assert _keeper_pid(lab) == keeper
    _ping(lab, PEER_ADDRESS)
    routes = lab.run(HOST, ["ip", "route", "show", "198.18.106.0/24"]).stdout
    assert "via 198.18.105.2 dev tun5" in routes, routes
    lab.run(HOST, ["ip", "route", "del", "198.18.106.0/24"])
    print(f"tunnel back {took:.1f} s after its ssh was killed")

    # The peer's address removed by hand: read sees the tunnel down; up repairs that end.
    lab.run(PEER, ["ip", "addr", "del", PEER_ADDRESS, "dev", DEV])
    drifted = _outs(provider.read(created.id, outs))
    assert drifted["state"] == "down"
    assert drifted["actual"] == {
        "host": {"address": ADDRESS, "up": True},
        "peer": {"address": None, "up": True},
    }
    assert (drifted["address"], drifted["peer_address"]) == (ADDRESS, PEER_ADDRESS)
    assert provider.diff(created.id, drifted, inputs).changes
    applied.mark()
    outs = _outs(provider.update(created.id, drifted, inputs))
    assert applied.steps == [(PEER, ("ip", "addr", "replace", PEER_ADDRESS, "dev", DEV))]
    assert outs["state"] == "up"
    assert outs["keeper_pid"] == keeper
    _ping(lab, PEER_ADDRESS)

    # The keeper killed by hand (its ssh lives on, orphaned): down; up restarts both.
    lab.run(HOST, ["kill", "-KILL", str(keeper)])
    _wait(
        "the keeper gone", lambda: _outs(provider.read(created.id, outs))["keeper_pid"] is None, 5
    )
    drifted = _outs(provider.read(created.id, outs))
    assert drifted["state"] == "down"
    outs = _outs(provider.update(created.id, drifted, inputs))
    assert outs["state"] == "up"
    assert outs["keeper_pid"] not in (None, keeper)
    keeper = outs["keeper_pid"]
    _ping(lab, PEER_ADDRESS)

    # New addresses: an update; the keeper restarts with them, the old ones are gone.
    moved = _inputs(
        provider, lab_endpoint, address="198.18.105.65/26", peer_address="198.18.105.66/26"
    )
    assert not provider.diff(created.id, outs, moved).replaces
    outs = _outs(provider.update(created.id, outs, moved))
    assert outs["state"] == "up"
    assert outs["actual"] == {
        "host": {"address": "198.18.105.65/26", "up": True},
        "peer": {"address": "198.18.105.66/26", "up": True},
    }
    assert outs["keeper_pid"] != keeper
    assert (_addresses(lab, HOST), _addresses(lab, PEER)) == (
        ["198.18.105.65/26"],
        ["198.18.105.66/26"],
    )
    _ping(lab, "198.18.105.66")
    applied.mark()
    provider.update(created.id, outs, moved)
    assert applied.steps == []

    # Delete from the stored outputs: keeper and ssh gone, our tun5 removed on both ends.
    provider.delete(created.id, outs)
    assert _ours_running(lab) == []
    assert (_addresses(lab, HOST), _addresses(lab, PEER)) == (None, None)
    assert _keeper_pid(lab) is None
    gone = _outs(provider.read(created.id, outs))
    assert (gone["state"], gone["keeper_pid"]) == ("down", None)
    assert gone["actual"]["peer"] == {"address": None, "up": False}
    applied.mark()
    provider.delete(created.id, outs)
    assert applied.steps == []


def test_clash_with_a_tun_device_on_the_peer(
    provider: TunnelProvider, lab: Any, lab_endpoint: Any, applied: Any
) -> None:
    # Someone else's tun5 on the peer (a persistent one, held by no process).
    lab.run(PEER, ["ip", "tuntap", "add", "dev", DEV, "mode", "tun"])
    try:
        applied.mark()
        with pytest.raises(PlanError, match=re.escape("tun5 already exists on peer 198.18.2.2")):
            provider.create(_inputs(provider, lab_endpoint))
        assert applied.steps == []
        assert _addresses(lab, PEER) == []  # untouched
        assert _addresses(lab, HOST) is None
        assert _keeper_pid(lab) is None
    finally:
        lab.run(PEER, ["ip", "tuntap", "del", "dev", DEV, "mode", "tun"], check=False)


def test_a_create_that_fails_stops_what_it_started(
    provider: TunnelProvider, lab: Any, lab_endpoint: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The keeper's ssh cannot reach the peer (nothing listens on port 1): create fails,
    # says what is missing with the keeper's log, and leaves nothing running.
    real = tunnel_module._tunnel
    monkeypatch.setattr(tunnel_module, "_tunnel", lambda props: {**real(props), "port": 1})
    monkeypatch.setattr(tunnel_module, "UP_TIMEOUT_S", 3.0)
    with pytest.raises(
        RuntimeError,
        match=r"(?s)tun5 old -> new is not up after 3 s: keeper current.*tun5 down.*refused",
    ):
        provider.create(_inputs(provider, lab_endpoint))
    assert _ours_running(lab) == []
    assert (_addresses(lab, HOST), _addresses(lab, PEER)) == (None, None)
