"""The route handover as it runs during a move (providers/migration/handover.py), with
scripted SSH sessions and libvirt's lifecycle event fired by hand: which end routes the
VM's /32 when, whatever the move's outcome."""

from __future__ import annotations

from typing import Any

import libvirt
import pytest

from providers.migration.handover import End, RouteHandover
from providers.plans import handover
from tests.support.fake_hosts import FakeSession

pytestmark = [pytest.mark.unit]

IP = "203.0.113.2"


class SourceConnection:
    """Keeps the lifecycle callback the handover registers, so a test can fire it."""

    def __init__(self) -> None:
        self.callback: Any = None
        self.deregistered: list[int] = []

    def domainEventRegisterAny(self, dom: Any, event_id: int, callback: Any, opaque: Any) -> int:
        assert event_id == libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE
        self.callback = callback
        return 7

    def domainEventDeregisterAny(self, callback_id: int) -> None:
        self.deregistered.append(callback_id)

    def pause_for_the_switch(self) -> None:
        self.callback(
            self,
            None,
            libvirt.VIR_DOMAIN_EVENT_SUSPENDED,
            libvirt.VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED,
            None,
        )


def _handover(
    target_fails: bool = False,
) -> tuple[RouteHandover, FakeSession, FakeSession, SourceConnection]:
    source = FakeSession("old")
    fail = [tuple(handover.route_here(IP, "vif1"))] if target_fails else []
    target = FakeSession("new", {("date", "+%s"): (0, "1700000000\n")}, fail=fail)
    routes = RouteHandover("vm", End("old", source, IP, "vif0"), End("new", target, IP, "vif1"))
    conn = SourceConnection()
    routes.watch(conn, object())
    return routes, source, target, conn


def test_the_target_holds_the_route_until_after_the_timeout() -> None:
    routes, _source, target, _conn = _handover()
    routes.hold(600)
    assert target.ran == [tuple(handover.make_hold_dir()), ("date", "+%s")]
    assert target.written == {handover.hold_path("vif1"): ("1700000720\n", "0600")}
    routes.finish(moved=False)


def test_at_the_pause_both_ends_switch(capsys: pytest.CaptureFixture[str]) -> None:
    routes, source, target, conn = _handover()
    conn.pause_for_the_switch()
    routes.finish(moved=True)
    assert source.ran == [tuple(handover.route_away(IP, "vif0"))]
    assert target.ran == [tuple(handover.route_here(IP, "vif1")), tuple(handover.release("vif1"))]
    assert conn.deregistered == [7]
    assert capsys.readouterr().out.startswith(f"vm: paused on old; {IP} routed to new ")


def test_a_move_without_a_pause_event_is_routed_at_the_end(
    capsys: pytest.CaptureFixture[str],
) -> None:
    routes, source, target, _conn = _handover()
    routes.finish(moved=True)
    assert source.ran == []
    assert target.ran == [tuple(handover.release("vif1")), tuple(handover.route_here(IP, "vif1"))]
    assert capsys.readouterr().out == f"vm: routing {IP} to vif1 on new now\n"


def test_a_failed_routing_at_the_pause_is_done_again_at_the_end(
    capsys: pytest.CaptureFixture[str],
) -> None:
    routes, _source, target, conn = _handover(target_fails=True)
    conn.pause_for_the_switch()
    with pytest.raises(OSError):  # the target is still unreachable at the end
        routes.finish(moved=True)
    assert target.ran.count(tuple(handover.route_here(IP, "vif1"))) == 2
    out = capsys.readouterr().out
    assert f"vm: routing {IP} to vif1 on new failed: new: connection lost" in out
    assert f"vm: routing {IP} to vif1 on new now" in out


def test_a_failed_move_after_the_pause_routes_the_source_again() -> None:
    routes, source, target, conn = _handover()
    conn.pause_for_the_switch()
    routes.finish(moved=False)
    here = tuple(handover.route_here(IP, "vif0"))
    assert source.ran == [tuple(handover.route_away(IP, "vif0")), here]
    assert target.ran[-1] == tuple(handover.release("vif1"))


def test_a_failed_move_before_the_pause_only_drops_the_hold() -> None:
    routes, source, target, _conn = _handover()
    routes.finish(moved=False)
    assert (source.ran, target.ran) == ([], [tuple(handover.release("vif1"))])
