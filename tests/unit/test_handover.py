"""The route handover's commands (providers/plans/handover.py), facts in, argv out."""

from __future__ import annotations

import pytest

from providers.plans import PlanError, handover
from providers.plans.vif_route_script import HOLD_DIR

pytestmark = [pytest.mark.unit]


def test_the_target_holds_its_route_until_after_the_move_could_time_out() -> None:
    assert handover.make_hold_dir() == ["install", "-d", "-m", "0700", "--", HOLD_DIR]
    assert handover.hold_path("vif3") == f"{HOLD_DIR}/vif3"
    assert handover.hold_until(1_700_000_000, 600.0) == f"{1_700_000_000 + 600 + 120}\n"
    assert handover.release("vif3") == ["rm", "-f", "--", f"{HOLD_DIR}/vif3"]


def test_the_route_moves_to_the_target_and_leaves_the_source() -> None:
    assert handover.route_here("203.0.113.2", "vif0") == [
        "ip", "route", "replace", "203.0.113.2/32", "dev", "vif0",
    ]  # fmt: skip
    assert handover.route_away("203.0.113.2", "vif0") == [
        "ip", "route", "del", "203.0.113.2/32", "dev", "vif0",
    ]  # fmt: skip


@pytest.mark.parametrize("vif", ["../etc/passwd", "vif 0", "-vif", "", "v" * 16, "vif*"])
def test_a_vif_that_is_no_plain_name_is_refused(vif: str) -> None:
    with pytest.raises(PlanError, match="not a plain interface name"):
        handover.hold_path(vif)
    with pytest.raises(PlanError):
        handover.route_here("203.0.113.2", vif)


@pytest.mark.parametrize("ip", ["203.0.113.2/29", "2001:db8::1", "vif0", "203.0.113.256"])
def test_an_address_that_is_no_ipv4_host_is_refused(ip: str) -> None:
    with pytest.raises(PlanError, match="not an IPv4 address"):
        handover.route_here(ip, "vif0")
