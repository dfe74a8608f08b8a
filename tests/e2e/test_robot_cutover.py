"""The whole cutover through Robot's failover switch, on the lab (`cutover.kind:
hetzner-robot`).

The test Robot (tests/support/robot_server.py) stands in for robot-ws.your-server.de: the
lab hosts' addresses are its servers' main IPs, the failover net 203.0.113.0/29 starts
routed to old, and when a switch takes effect it moves core's route (`on_switch` ->
`baseline.switch_core`), as Hetzner's network does. A switch takes SWITCH_S, and the
POST returns when it is done. VM `rbt` (vif3) moves between old and new with `upstream:
auto`, so each move is a cutover; a probe from the client runs through each `up`, so there
is traffic for the first-packet watch to see.

1. A whole cutover, there and back: Robot switches, core's route moves, the first packet
   arrives at the new upstream, its egress mark goes, the old upstream's comes.
2. The switch slower than the watch: the POST outlasts `timeout_s` and the watch runs
   out. `up` fails saying no packet arrived; the mark stays and the VM on new answers the
   client both ways through old and the tunnel. Once Robot's switch has taken effect, the
   next `up` switches nothing, watches again and completes.
3. The switch failing after a delay (500 FAILOVER_FAILED): `up` fails with Robot's error,
   the mark stays, the VM answers both ways; the next `up`, Robot healthy, completes.
Every Robot call is counted against the documented limits (GET 100/h, POST 50/h).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pulumi import automation as auto

from lab import baseline
from lab import topology as t
from tests.e2e.conftest import GeneratedStack, lab_vm
from tests.e2e.test_preflight import running_on, wait_answers
from tests.support.robot_server import Failover, RobotServer, RobotState, robot_server

pytestmark = [pytest.mark.e2e, pytest.mark.lab, pytest.mark.engine]

VM, VIF, IP = "rbt", 3, "203.0.113.5"
PREFIX = "203.0.113.0/29"
FAILOVER = "203.0.113.0"  # a failover net is addressed by its net address
TIMEOUT_S = 5  # cutover.timeout_s: the bound on one Robot request
WATCH_S = 10  # cutover.first_packet_timeout_s: must exceed timeout_s
SWITCH_S = 3.0  # Robot's 40-60 s, scaled down
FAIL_AFTER_S = 3.0
USER, PASSWORD = "#ws+glidepath-e2e", "e2e-robot-password"
MARK = '--comment "glidepath net0" -j MARK --set-xmark 0x1/0xffffffff'
PROBE_S = 300


def main_ip(host: str) -> str:
    return str(t.hypervisor(host).address)


def _marked(lab: Any, host: str) -> bool:
    return MARK in lab.run(host, ["iptables-save", "-t", "mangle"], timeout=30).stdout


def _answers_both_ways(lab: Any) -> None:
    """Replies reach the client: in through core, out through whichever path is right
    (core drops replies that arrive from a host it does not route the prefix to)."""
    try:
        wait_answers(lab, IP, boot_s=10)
    except AssertionError:
        for host in ("old", "new"):
            for argv in (
                ["ip", "-4", "route", "show", "table", "all"],
                ["ip", "rule"],
                ["iptables-save", "-t", "mangle"],
                ["tail", "-c", "2000", f"/var/log/libvirt/qemu/{VM}-console.log"],
            ):
                shown = lab.run(host, argv, check=False, timeout=30)
                print(f"--- {host}: {' '.join(argv)}\n{shown.stdout}{shown.stderr}")
        raise
    result = lab.probe(IP, 2)
    assert result.received > 0.8 * result.sent, result.summary()


def _calls(robot: RobotServer) -> tuple[int, int]:
    return robot.state.count("GET"), robot.state.count("POST")


def _active(robot: RobotServer) -> str | None:
    return robot.state.failovers[FAILOVER].active_server_ip


def _said(stack: GeneratedStack, text: str) -> bool:
    return any(text in line for line in stack.output)


def _up_with_traffic(lab: Any, stack: GeneratedStack) -> auto.UpResult:
    probe = lab.start_probe(IP, PROBE_S)
    try:
        return stack.up()
    finally:
        print(probe.stop().summary())


@pytest.fixture(scope="module")
def robot(lab: Any) -> Iterator[RobotServer]:
    baseline.switch_core("old")
    hosts = {main_ip(name): name for name in ("old", "new")}
    state = RobotState(
        user=USER,
        password=PASSWORD,
        failovers={
            FAILOVER: Failover(
                ip=FAILOVER,
                netmask="255.255.255.248",
                server_ip=main_ip("old"),
                server_number=1,
                active_server_ip=main_ip("old"),
            )
        },
        servers=set(hosts),
        switch_s=SWITCH_S,
        # Hetzner's network follows Robot: core routes the prefix to the new server.
        on_switch=lambda _ip, target: baseline.switch_core(hosts[target]),
    )
    try:
        with robot_server(state) as server:
            yield server
        assert state.errors == [], state.errors
    finally:
        baseline.switch_core("old")


@pytest.fixture(scope="module")
def stack(
    lab: Any,
    robot: RobotServer,
    generated_stacks: Callable[[str, dict[str, dict[str, Any]]], GeneratedStack],
) -> GeneratedStack:
    # `robot` first: the stack is destroyed before the test Robot stops.
    handle = generated_stacks("robot", {VM: lab_vm(VM, VIF, "old")})
    networks = handle.config["glidepath:networks"]
    networks["net0"]["cutover"] = {
        "kind": "hetzner-robot",
        "base_url": robot.base_url,
        "timeout_s": TIMEOUT_S,
        "first_packet_timeout_s": WATCH_S,
    }
    handle.set("networks", networks)
    handle.set_secret("robot", {"user": USER, "password": PASSWORD})
    assert handle.up().summary.result == "succeeded"
    assert running_on(lab, VM) == ["old"]
    assert baseline.core_route() == "old"
    assert _marked(lab, "new") and not _marked(lab, "old")
    _answers_both_ways(lab)
    return handle


def test_1_a_whole_cutover_through_robot_and_back(
    lab: Any, stack: GeneratedStack, robot: RobotServer
) -> None:
    for source, target in (("old", "new"), ("new", "old")):
        before = _calls(robot)
        stack.move(VM, target)
        result = _up_with_traffic(lab, stack)
        assert result.summary.result == "succeeded"
        assert running_on(lab, VM) == [target]
        assert (baseline.core_route(), _active(robot)) == (target, main_ip(target))
        assert not _marked(lab, target) and _marked(lab, source)
        # The diff's check (the preview's one GET, made again by `up`), then the cutover.
        assert _said(
            stack, f"Robot routes failover {FAILOVER} ({PREFIX}) to {source} ({main_ip(source)})"
        ), stack.output
        assert _said(stack, f"Robot routes failover {FAILOVER} ({PREFIX}) to {main_ip(target)}")
        assert _said(stack, f"net0: first packet on {target}"), stack.output
        # `up` (the Automation API skips the preview): the diff's GET, the update's read
        # of where it is routed, the switch and its read back.
        gets, posts = (now - then for now, then in zip(_calls(robot), before, strict=True))
        assert (gets, posts) == (3, 1), robot.state.seen[-6:]
        _answers_both_ways(lab)
    stack.preview()
    assert stack.changes() == []


def test_2_a_switch_slower_than_the_watch_keeps_the_mark(
    lab: Any, stack: GeneratedStack, robot: RobotServer
) -> None:
    assert running_on(lab, VM) == ["old"]
    robot.state.switch_s = 600  # ended below by `settle()`, once the checks are done
    try:
        stack.move(VM, "new")
        with pytest.raises(auto.CommandError) as failed:
            _up_with_traffic(lab, stack)
        message = str(failed.value)
        assert f"no packet for {PREFIX} arrived directly at new (br0) within {WATCH_S} s" in message
        assert "new's egress mark stays" in message
        assert f"within {TIMEOUT_S} s; the switch may still be in progress" in message
        # The VM moved; Robot is still switching: core routes to old, new keeps its mark,
        # and the VM answers through old and the tunnel, both ways.
        assert running_on(lab, VM) == ["new"]
        assert robot.state.pending == {FAILOVER: main_ip("new")}
        assert (baseline.core_route(), _active(robot)) == ("old", main_ip("old"))
        assert _marked(lab, "new")
        _answers_both_ways(lab)
        # Robot's switch takes effect at last.
        robot.state.settle()
    finally:
        robot.state.switch_s = SWITCH_S
    assert (baseline.core_route(), _active(robot)) == ("new", main_ip("new"))

    before = _calls(robot)
    result = _up_with_traffic(lab, stack)
    assert result.summary.result == "succeeded"
    assert _said(stack, f"to new ({main_ip('new')}) already: no switch needed"), stack.output
    assert _said(stack, "net0: first packet on new"), stack.output
    assert not _marked(lab, "new") and _marked(lab, "old")
    # No switch this time: the diff's GET and the update's read.
    assert tuple(now - then for now, then in zip(_calls(robot), before, strict=True)) == (2, 0)
    _answers_both_ways(lab)


def test_3_a_switch_failing_after_a_delay_keeps_the_mark(
    lab: Any, stack: GeneratedStack, robot: RobotServer
) -> None:
    assert running_on(lab, VM) == ["new"]
    robot.state.fail_after_s = FAIL_AFTER_S
    try:
        stack.move(VM, "old")
        with pytest.raises(auto.CommandError) as failed:
            _up_with_traffic(lab, stack)
        message = str(failed.value)
        assert (
            f"Robot failed while switching failover {FAILOVER} ({PREFIX}) to {main_ip('old')}"
        ) in message
        assert "500 FAILOVER_FAILED" in message
        assert running_on(lab, VM) == ["old"]
        assert (baseline.core_route(), _active(robot)) == ("new", main_ip("new"))
        assert _marked(lab, "old")
        _answers_both_ways(lab)
    finally:
        robot.state.fail_after_s = None

    result = _up_with_traffic(lab, stack)
    assert result.summary.result == "succeeded"
    assert _said(stack, "net0: first packet on old"), stack.output
    assert (baseline.core_route(), _active(robot)) == ("old", main_ip("old"))
    assert not _marked(lab, "old") and _marked(lab, "new")
    _answers_both_ways(lab)


def test_4_robot_was_called_within_its_documented_limits(robot: RobotServer) -> None:
    gets, posts = _calls(robot)
    print(f"Robot calls in this module: {gets} GET, {posts} POST")
    assert gets <= 100 and posts <= 50
    assert all(seen.status not in (401, 403) for seen in robot.state.seen), robot.state.seen
    assert robot.state.errors == []
