"""The hetzner-robot cutover backend against a local server that implements the documented
failover endpoints (tests/support/robot_server.py). Loopback only; no network."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from providers.cutover import CutoverError, SwitchPending, backend_for
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
    with robot_server(_state(lagging=True, switch_s=30)) as server:
        backend = _backend(server)
        backend.switch(NEW)  # no error: the caller waits for the first packet
        out = capsys.readouterr().out
        assert f"still reports {OLD} as active" in out
        server.state.settle()
        assert backend.current() == NEW


# --- a switch takes time, as Robot's does --------------------------------------------------


def test_a_switch_returns_when_it_has_taken_effect() -> None:
    switched: list[tuple[str, str, str | None]] = []
    state = _state(switch_s=1.0)
    # The lab's router follows here; GET does not report the new server before it has.
    failover = state.failovers["203.0.113.0"]
    state.on_switch = lambda ip, target: switched.append((ip, target, failover.active_server_ip))
    with robot_server(state) as server:
        backend = _backend(server)
        seen_during: list[str | None] = []
        locked_said: list[str] = []

        def meanwhile() -> None:
            time.sleep(0.3)
            seen_during.append(backend.current())
            try:
                backend.switch(OLD)
            except CutoverError as error:
                locked_said.append(str(error))

        other = threading.Thread(target=meanwhile)
        started = time.monotonic()
        other.start()
        backend.switch(NEW)
        took = time.monotonic() - started
        other.join(5)
        assert took >= 1.0
        assert switched == [("203.0.113.0", NEW, OLD)]
        assert seen_during == [OLD]  # the switch was running: Robot shows the old server
        (said,) = locked_said
        assert "409 FAILOVER_LOCKED" in said and "already switching" in said
        assert _active(server) == NEW and backend.current() == NEW
        assert server.state.count("POST") == 2  # the switch, and the one refused meanwhile
        assert server.state.errors == []


def test_a_switch_slower_than_timeout_s_may_still_happen(
    capsys: pytest.CaptureFixture[str],
) -> None:
    switched: list[str] = []
    state = _state(switch_s=30)
    state.on_switch = lambda _ip, target: switched.append(target)
    with robot_server(state) as server:
        cutover = {"kind": "hetzner-robot", "base_url": server.base_url, "timeout_s": 1}
        backend = HetznerRobot(cutover, PREFIX, CREDENTIALS)
        with pytest.raises(SwitchPending) as pending:
            backend.switch(NEW)
        assert "did not answer POST failover 203.0.113.0" in str(pending.value)
        assert "within 1 s; the switch may still be in progress" in str(pending.value)
        assert backend.current() == OLD
        with pytest.raises(CutoverError, match="FAILOVER_LOCKED"):
            backend.switch(NEW)  # a retry meanwhile is refused, not a second switch
        server.state.settle()  # Robot finishes, whoever waits for it
        assert switched == [NEW]
        assert backend.current() == NEW
        assert server.state.count("POST") == 2
    assert "Robot routes" not in capsys.readouterr().out


def test_a_switch_that_fails_after_a_delay(robot: RobotServer) -> None:
    switched: list[str] = []
    robot.state.fail_after_s = 0.5
    robot.state.on_switch = lambda _ip, target: switched.append(target)
    backend = _backend(robot)
    started = time.monotonic()
    with pytest.raises(CutoverError) as error:
        backend.switch(NEW)
    assert time.monotonic() - started >= 0.5
    message = str(error.value)
    assert f"Robot failed while switching failover 203.0.113.0 ({PREFIX}) to {NEW}" in message
    assert "500 FAILOVER_FAILED" in message
    assert "`pulumi refresh`" in message
    assert (switched, _active(robot)) == ([], OLD)
    assert robot.state.locked == set()  # over: the next switch may run
    robot.state.fail_after_s = None
    backend.switch(NEW)
    assert (switched, _active(robot)) == ([NEW], NEW)


def test_an_accepted_switch_that_never_takes_effect(capsys: pytest.CaptureFixture[str]) -> None:
    # Robot's answer runs ahead of its routing, and the routing then fails: the backend
    # cannot know; the first-packet watch on the new host is what tells.
    with robot_server(_state(lagging=True, fail_after_s=30)) as server:
        backend = _backend(server)
        backend.switch(NEW)
        assert f"still reports {OLD} as active" in capsys.readouterr().out
        server.state.settle()
        assert backend.current() == OLD


def test_maintenance_is_said_and_not_retried(robot: RobotServer) -> None:
    robot.state.maintenance = True
    backend = _backend(robot)
    for call in (backend.current, lambda: backend.switch(NEW)):
        with pytest.raises(CutoverError, match=r"down for maintenance \(503\)"):
            call()
    assert (robot.state.count("GET"), robot.state.count("POST")) == (1, 1)
    assert _active(robot) == OLD


def test_the_examples_placeholders_are_never_sent(robot: RobotServer) -> None:
    placeholders = {"user": "REPLACE-ME-robot-user", "password": "REPLACE-ME-password"}
    backend = _backend(robot, placeholders)
    assert backend.placeholders
    for call in (backend.current, lambda: backend.switch(NEW)):
        with pytest.raises(CutoverError, match="holds the example's placeholders"):
            call()
    assert robot.state.seen == []  # no failed login counted against this address


# --- the preview's one read ----------------------------------------------------------------

MAIN_IPS = {"old": OLD, "new": NEW}


def test_check_switch_routed_to_the_current_upstream(robot: RobotServer) -> None:
    said = _backend(robot).check_switch("old", "new", MAIN_IPS)
    assert said == (
        f"Robot routes failover 203.0.113.0 ({PREFIX}) to old ({OLD}) now and can switch it "
        f"to new ({NEW})"
    )
    assert (robot.state.count("GET"), robot.state.count("POST")) == (1, 0)


def test_check_switch_routed_to_the_target_already(robot: RobotServer) -> None:
    robot.state.failovers["203.0.113.0"].active_server_ip = NEW
    said = _backend(robot).check_switch("old", "new", MAIN_IPS)
    assert f"to new ({NEW}) already: no switch needed" in said
    assert (robot.state.count("GET"), robot.state.count("POST")) == (1, 0)


@pytest.mark.parametrize(
    ("active", "said"),
    [
        (
            "198.51.100.99",
            "to 198.51.100.99, the main IP of no host of this stack: switching it to new "
            "would take it from that server. If 198.51.100.99 is one of these servers, set "
            f"its main_ip to it (address stays where SSH reaches it); otherwise check "
            f"cutover.failover_ip. Main IPs: old {OLD}, new {NEW}, spare 198.51.100.30",
        ),
        (
            "198.51.100.30",
            "to spare (198.51.100.30), but this stack's state says old (198.51.100.10): it "
            "was switched outside this stack. `pulumi refresh`",
        ),
        (None, f"to no server (unrouted), but this stack's state says old ({OLD})"),
    ],
)
def test_check_switch_routed_elsewhere_fails_naming_the_addresses(
    robot: RobotServer, active: str | None, said: str
) -> None:
    robot.state.failovers["203.0.113.0"].active_server_ip = active
    main_ips = {**MAIN_IPS, "spare": "198.51.100.30"}
    with pytest.raises(CutoverError) as error:
        _backend(robot).check_switch("old", "new", main_ips)
    assert said in str(error.value)
    assert (robot.state.count("GET"), robot.state.count("POST")) == (1, 0)


def test_check_switch_of_an_ordinary_subnet_says_manual(robot: RobotServer) -> None:
    cutover = {"base_url": robot.base_url}
    with pytest.raises(CutoverError) as error:
        HetznerRobot(cutover, "203.0.113.64/29", CREDENTIALS).check_switch("old", "new", MAIN_IPS)
    assert "is not a failover IP or net there" in str(error.value)
    assert "cutover.kind: manual and ask Hetzner support" in str(error.value)
    assert robot.state.count("GET") == 1


def test_check_switch_with_wrong_credentials(robot: RobotServer) -> None:
    wrong = {"user": USER, "password": "wrong-password-123"}
    with pytest.raises(CutoverError, match=r"rejected the credentials in glidepath:robot \(401\)"):
        _backend(robot, wrong).check_switch("old", "new", MAIN_IPS)
    assert robot.state.count("GET") == 1  # never retried: 3 failures block the address


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
    # What an ordinary additional subnet looks like to Robot: no failover object at all.
    cutover = {"base_url": robot.base_url, "failover_ip": "203.0.113.64"}
    with pytest.raises(CutoverError, match=r"no failover 203\.0\.113\.64") as error:
        HetznerRobot(cutover, "203.0.113.64/29", CREDENTIALS).current()
    message = str(error.value)
    assert "404 NOT_FOUND" in message
    assert "An ordinary additional subnet" in message
    assert "cutover.kind: manual and ask Hetzner support to route the subnet" in message
    assert "cutover.failover_ip" in message


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
    robot.state.locked.clear()
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


def test_robot_credentials_come_from_the_environment_when_both_are_set() -> None:
    # The approved deploy gets them as environment variables, never in the stack (its
    # config is part of the update plan the pull request's preview saved).
    from providers.cutover.hetzner_robot import robot_credentials

    configured = {"user": "REPLACE-ME-robot-user", "password": "REPLACE-ME-robot-password"}
    both = {"GLIDEPATH_ROBOT_USER": "#ws+Ab12", "GLIDEPATH_ROBOT_PASSWORD": "pw-123456"}
    assert robot_credentials(configured, {}) == configured
    assert robot_credentials(configured, {"GLIDEPATH_ROBOT_USER": "#ws+Ab12"}) == configured
    assert robot_credentials(None, both) == {"user": "#ws+Ab12", "password": "pw-123456"}
    assert robot_credentials(configured, both) == {"user": "#ws+Ab12", "password": "pw-123456"}


def test_the_upstream_provider_takes_robot_credentials_from_its_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from types import SimpleNamespace

    from providers.upstream import UpstreamProvider

    placeholders = {"user": "REPLACE-ME-robot-user", "password": "REPLACE-ME-robot-password"}
    provider = UpstreamProvider()
    provider.configure(SimpleNamespace(config={"robot": placeholders}))
    assert provider.robot_credentials() == placeholders
    monkeypatch.setenv("GLIDEPATH_ROBOT_USER", "#ws+Ab12")
    monkeypatch.setenv("GLIDEPATH_ROBOT_PASSWORD", "pw-123456")
    provider.configure(SimpleNamespace(config={"robot": placeholders}))
    assert provider.robot_credentials() == {"user": "#ws+Ab12", "password": "pw-123456"}
