"""The preview of a Robot cutover: the Upstream's diff asks Robot once, read-only, whether
the switch can work, so a move whose cutover cannot happen fails before any VM moves.
Against the local Robot (tests/support/robot_server.py), which counts every call."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest

from components.config import parse_config
from components.routed import routed_host
from providers.cutover import CutoverError
from providers.upstream import UpstreamProvider
from tests.support.robot_server import RobotServer, robot_server
from tests.unit.test_config import GOOD
from tests.unit.test_hetzner_robot import CREDENTIALS, NEW, OLD, PREFIX, _state

pytestmark = [pytest.mark.unit]

# Reached over SSH at 198.18.x.2; Robot knows the servers by their main IPs.
HOSTS = {
    "old": {"name": "old", "address": "198.18.1.2", "main_ip": OLD},
    "new": {"name": "new", "address": "198.18.2.2", "main_ip": NEW},
}


@pytest.fixture
def robot() -> Iterator[RobotServer]:
    with robot_server(_state()) as server:
        yield server


def _provider(credentials: Any = CREDENTIALS) -> UpstreamProvider:
    provider = UpstreamProvider()
    provider._robot_credentials = credentials  # what configure() takes from glidepath:robot
    return provider


def _props(robot: RobotServer, upstream: str, **fields: Any) -> dict[str, Any]:
    news = {
        "network": "net0",
        "prefix": PREFIX,
        "hosts": HOSTS,
        "upstream": upstream,
        "marked": [host for host in HOSTS if host != upstream],
        "mark": 1,
        "cutover": {"kind": "hetzner-robot", "base_url": robot.base_url, "timeout_s": 10},
        **fields,
    }
    result = UpstreamProvider().check({}, news)
    assert not result.failures
    return dict(result.inputs)


def _calls(robot: RobotServer) -> tuple[int, int]:
    return robot.state.count("GET"), robot.state.count("POST")


def test_a_cutover_preview_asks_robot_once(
    robot: RobotServer, capsys: pytest.CaptureFixture[str]
) -> None:
    olds, news = _props(robot, "old"), _props(robot, "new")
    assert _provider().diff("net0", olds, news).changes
    assert _calls(robot) == (1, 0)  # one GET, never a POST
    out = capsys.readouterr().out
    assert "net0: cutover 203.0.113.0/29 old -> new (hetzner-robot)" in out
    assert f"net0: Robot routes failover 203.0.113.0 ({PREFIX}) to old ({OLD}) now" in out


def test_no_cutover_no_call(robot: RobotServer) -> None:
    olds = _props(robot, "old")
    news = _props(robot, "old", mark=2)  # an update, not a cutover
    assert _provider().diff("net0", olds, news).changes
    assert _provider().diff("net0", olds, olds).changes is False
    assert _calls(robot) == (0, 0)


def test_routed_to_the_target_already_is_fine(robot: RobotServer) -> None:
    # An earlier `up` switched, and its watch for the first packet ran out.
    robot.state.failovers["203.0.113.0"].active_server_ip = NEW
    assert _provider().diff("net0", _props(robot, "old"), _props(robot, "new")).changes
    assert _calls(robot) == (1, 0)


@pytest.mark.parametrize(
    ("setup", "said"),
    [
        (
            lambda state: setattr(state.failovers["203.0.113.0"], "active_server_ip", "192.0.2.7"),
            "Robot routes failover 203.0.113.0 (203.0.113.0/29) to 192.0.2.7, the main IP of "
            "no host of this stack",
        ),
        (lambda state: state.failovers.clear(), "cutover.kind: manual and ask Hetzner support"),
        (lambda state: setattr(state, "password", "rotated"), "credentials in glidepath:robot"),
        (lambda state: setattr(state, "maintenance", True), "down for maintenance (503)"),
    ],
)
def test_a_cutover_that_cannot_work_fails_the_preview(
    robot: RobotServer, setup: Any, said: str
) -> None:
    setup(robot.state)
    with pytest.raises(CutoverError) as error:
        _provider().diff("net0", _props(robot, "old"), _props(robot, "new"))
    message = str(error.value)
    assert message.startswith("net0: cannot cut over 203.0.113.0/29 old -> new: ")
    assert said in message
    assert robot.state.count("POST") == 0
    assert robot.state.count("GET") == 1


def test_the_hosts_main_ips_are_named(robot: RobotServer) -> None:
    robot.state.failovers["203.0.113.0"].active_server_ip = "198.18.1.2"  # old's SSH address
    with pytest.raises(CutoverError) as error:
        _provider().diff("net0", _props(robot, "old"), _props(robot, "new"))
    assert f"Main IPs: old {OLD}, new {NEW}" in str(error.value)


def test_placeholder_credentials_skip_the_call_and_say_so(
    robot: RobotServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # A pull request's preview in the GitOps pipeline has no Robot credentials
    # (docs/gitops.md); sending the placeholders would count as failed logins.
    placeholders = {"user": "REPLACE-ME-user", "password": "REPLACE-ME-password"}
    _provider(placeholders).diff("net0", _props(robot, "old"), _props(robot, "new"))
    assert robot.state.seen == []
    assert "glidepath:robot holds placeholders: the preview did not ask Robot" in (
        capsys.readouterr().out
    )


def test_missing_credentials_fail_the_preview(robot: RobotServer) -> None:
    with pytest.raises(CutoverError, match=r"glidepath:robot .* is not set"):
        _provider(None).diff("net0", _props(robot, "old"), _props(robot, "new"))
    assert robot.state.seen == []


def test_the_programs_read_of_where_the_prefix_is_routed_uses_main_ips(
    robot: RobotServer,
) -> None:
    # components/routed.py: with the VMs split, the program reads the routed host (one GET).
    raw = copy.deepcopy(GOOD)
    for name, host in HOSTS.items():
        raw["hosts"][name]["main_ip"] = host["main_ip"]
    raw["networks"]["net0"]["cutover"] = {"kind": "hetzner-robot", "base_url": robot.base_url}
    raw["robot"] = CREDENTIALS
    config = parse_config(raw)
    network = config.networks["net0"]
    assert routed_host(network, config, None, json.dumps(CREDENTIALS)) == "old"
    robot.state.failovers["203.0.113.0"].active_server_ip = NEW
    assert routed_host(network, config, None, CREDENTIALS) == "new"
    assert _calls(robot) == (2, 0)
