"""The hetzner-robot cutover backend against a local server that implements the documented
failover endpoints (tests/support/robot_server.py). Loopback only; no network."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any

import pytest

from providers.cutover import CutoverError, backend_for
from providers.cutover.hetzner_robot import HetznerRobot
from tests.support.robot_server import Failover, Limit, RobotServer, RobotState, robot_server

pytestmark = [pytest.mark.unit]

PREFIX = "203.0.113.0/29"
OLD = "198.51.100.10"  # main IPs of the two hosts
NEW = "198.51.100.20"
USER = "#ws+Zq7userX"
PASSWORD = "s3cret-Pa55-do-not-print"  # noqa: S105 (a test credential, checked to stay unprinted)
CREDENTIALS = {"user": USER, "password": PASSWORD}


def _state(**kwargs: Any) -> RobotState:
    return RobotState(
        user=USER,
        password=PASSWORD,
        failovers={
            "203.0.113.0": Failover(
                ip="203.0.113.0",
                netmask="255.255.255.248",
                server_ip=OLD,
                server_number=321,
                active_server_ip=OLD,
            )
        },
        servers={OLD, NEW},
        **kwargs,
    )


@pytest.fixture
def robot() -> Iterator[RobotServer]:
    with robot_server(_state()) as server:
        yield server


def _backend(server: RobotServer, credentials: Any = CREDENTIALS, **kwargs: Any) -> HetznerRobot:
    cutover = {"kind": "hetzner-robot", "base_url": server.base_url, "timeout_s": 10}
    return HetznerRobot(cutover, PREFIX, credentials, **kwargs)


def _active(server: RobotServer) -> str | None:
    return server.state.failovers["203.0.113.0"].active_server_ip


def test_current_reads_active_server_ip(robot: RobotServer) -> None:
    backend = _backend(robot)
    assert backend.failover_ip == "203.0.113.0"  # the prefix's network address
    assert backend.current() == OLD
    assert robot.state.count("GET") == 1


def test_current_unrouted_is_none(robot: RobotServer) -> None:
    robot.state.failovers["203.0.113.0"].active_server_ip = None
    assert _backend(robot).current() is None


def test_switch_and_read_back(robot: RobotServer, capsys: pytest.CaptureFixture[str]) -> None:
    backend = _backend(robot)
    backend.switch(NEW)
    assert _active(robot) == NEW
    assert backend.current() == NEW
    assert robot.state.count("POST") == 1
    assert f"routes failover 203.0.113.0 ({PREFIX}) to {NEW}" in capsys.readouterr().out


def test_already_routed_is_success(robot: RobotServer, capsys: pytest.CaptureFixture[str]) -> None:
    _backend(robot).switch(OLD)
    assert _active(robot) == OLD
    assert robot.state.count("POST") == 1
    assert "already routed" in capsys.readouterr().out


def test_accepted_but_not_yet_active_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    with robot_server(_state(lagging=True)) as server:
        backend = _backend(server)
        backend.switch(NEW)  # no error: the caller waits for the first packet
        out = capsys.readouterr().out
        assert f"still reports {OLD} as active" in out
        server.state.settle()
        assert backend.current() == NEW


def test_wrong_credentials_change_nothing(robot: RobotServer) -> None:
    wrong = {"user": USER, "password": "wrong-password-123"}
    with pytest.raises(CutoverError) as error:
        _backend(robot, wrong).switch(NEW)
    assert "Robot rejected the credentials in glidepath:robot (401)" in str(error.value)
    assert _active(robot) == OLD
    # One attempt, no retry: Robot blocks the IP after 3 failed logins.
    assert robot.state.count("POST") == 1
    assert robot.state.count("POST", authorized=True) == 0
    with pytest.raises(CutoverError, match=r"\(401\)"):
        _backend(robot, wrong).current()


def test_rate_limit_fails_at_once_when_the_window_is_long() -> None:
    slept: list[float] = []
    with robot_server(_state(limits={"POST": Limit(1, 3600)})) as server:
        backend = _backend(server, sleep=slept.append)
        backend.switch(NEW)
        with pytest.raises(CutoverError) as error:
            backend.switch(OLD)
        message = str(error.value)
        assert "rate limit" in message
        assert "1 requests per 3600 s" in message
        assert "3600 s" in message
        assert slept == []  # no waiting an hour inside `pulumi up`
        assert server.state.count("POST") == 2  # the accepted one and the refused one
        assert _active(server) == NEW


def test_rate_limit_short_window_one_bounded_retry() -> None:
    with robot_server(_state(limits={"POST": Limit(1, 1)})) as server:
        backend = _backend(server)
        backend.switch(NEW)
        backend.switch(OLD)  # refused, waits the documented 1 s once, then accepted
        assert _active(server) == OLD
        assert server.state.count("POST") == 3


def test_rate_limit_short_window_retries_only_once() -> None:
    slept: list[float] = []
    with robot_server(_state(limits={"POST": Limit(1, 5)})) as server:
        backend = _backend(server, sleep=slept.append)  # does not wait: still limited
        backend.switch(NEW)
        with pytest.raises(CutoverError, match="rate limit"):
            backend.switch(OLD)
        assert slept == [5.0]
        assert server.state.count("POST") == 3  # 1 accepted + 2 refused, no more


def test_locked_says_a_switch_is_in_progress() -> None:
    with robot_server(_state(locked={"203.0.113.0"})) as server:
        with pytest.raises(CutoverError) as error:
            _backend(server).switch(NEW)
        assert "in progress" in str(error.value)
        assert "FAILOVER_LOCKED" in str(error.value)
        assert _active(server) == OLD
        assert server.state.count("POST") == 1


def test_unknown_failover_ip(robot: RobotServer) -> None:
    cutover = {"base_url": robot.base_url, "failover_ip": "203.0.113.64"}
    with pytest.raises(CutoverError, match=r"no failover 203\.0\.113\.64"):
        HetznerRobot(cutover, "203.0.113.64/29", CREDENTIALS).current()


def test_target_not_a_server(robot: RobotServer) -> None:
    with pytest.raises(CutoverError, match="not the main IP of a server"):
        _backend(robot).switch("192.0.2.99")
    assert _active(robot) == OLD


def test_failover_smaller_than_prefix_is_refused(robot: RobotServer) -> None:
    robot.state.failovers["203.0.113.0"].netmask = "255.255.255.255"
    with pytest.raises(CutoverError, match=r"does not cover 203\.0\.113\.0/29"):
        _backend(robot).current()


def test_credentials_never_in_messages(
    robot: RobotServer, capsys: pytest.CaptureFixture[str]
) -> None:
    errors: list[str] = []

    def expect_error(backend: HetznerRobot, address: str | None = None) -> None:
        with pytest.raises(CutoverError) as error:
            backend.current() if address is None else backend.switch(address)
        errors.append(str(error.value))

    expect_error(_backend(robot, {"user": USER, "password": "x" + PASSWORD}), NEW)  # 401
    robot.state.locked.add("203.0.113.0")
    expect_error(_backend(robot), NEW)  # 409 locked
    robot.state.limits["GET"] = Limit(0, 3600)
    expect_error(_backend(robot))  # 403 rate limit
    closed = HetznerRobot({"base_url": "http://127.0.0.1:9"}, PREFIX, CREDENTIALS)
    expect_error(closed)  # connection refused
    with pytest.raises(CutoverError) as bad:
        HetznerRobot({"base_url": f"https://{USER}:{PASSWORD}@robot.example"}, PREFIX, {})
    errors.append(str(bad.value))
    _backend(robot).switch(OLD)  # already routed: a log line
    printed = capsys.readouterr().out
    errors.append(repr(_backend(robot)))
    for text in [*errors, printed]:
        assert PASSWORD not in text
        assert USER not in text


def test_https_required_except_loopback() -> None:
    for url in ("http://robot-ws.your-server.de", "http://192.0.2.1:8080", "ftp://x.example"):
        with pytest.raises(CutoverError, match="https"):
            HetznerRobot({"base_url": url}, PREFIX, CREDENTIALS)
    for url in ("http://127.0.0.1:8080", "http://[::1]:8080", "http://localhost:1"):
        HetznerRobot({"base_url": url}, PREFIX, CREDENTIALS)
    backend = HetznerRobot({}, PREFIX, CREDENTIALS)
    assert backend.base_url == "https://robot-ws.your-server.de"
    # TLS is verified: certificate and host name.
    assert backend._context.verify_mode == ssl.CERT_REQUIRED
    assert backend._context.check_hostname


def test_credentials_must_be_set() -> None:
    for credentials in (None, {}, {"user": USER}, {"user": "", "password": PASSWORD}):
        with pytest.raises(CutoverError, match="glidepath:robot"):
            HetznerRobot({}, PREFIX, credentials)


def test_backend_for_builds_hetzner_robot() -> None:
    class Provider:
        def robot_credentials(self) -> dict[str, str]:
            return dict(CREDENTIALS)

    cutover = {"kind": "hetzner-robot", "failover_ip": "203.0.113.0"}
    backend = backend_for(cutover, PREFIX, Provider())
    assert isinstance(backend, HetznerRobot)
    assert backend.kind == "hetzner-robot"
    assert backend.failover_ip == "203.0.113.0"
    assert backend.base_url == "https://robot-ws.your-server.de"
    assert backend.unreachable(["203.0.113.2"]) == []
