"""PolicyRule against lab host `new`: create, apply again (nothing runs), update of mark
and table (by name), drift seen by read and repaired, clash, delete, delete again."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from providers.plans import PlanError
from providers.policy_rule import PolicyRuleProvider
from providers.routing_table import RoutingTableProvider
from tests.providers.iproute_lab import HOST, checked, outs_of, provider_for, rules_at, scrub

pytestmark = [pytest.mark.lab]

PRIORITY = 31001


def _rule(raw: dict[str, Any]) -> tuple[str | None, str | None]:
    return raw.get("fwmark"), raw.get("table")


@pytest.fixture
def provider(lab: Any, lab_credentials: Any) -> Iterator[PolicyRuleProvider]:
    scrub(lab)
    yield provider_for(PolicyRuleProvider, lab_credentials)
    scrub(lab)


def test_lifecycle(
    provider: PolicyRuleProvider, lab: Any, lab_endpoint: Any, lab_credentials: Any, applied: Any
) -> None:
    host = lab_endpoint(HOST)
    inputs = checked(provider, host=host, priority=float(PRIORITY), fwmark=0x7E57, table=231.0)
    created = provider.create(inputs)
    outs = outs_of(created)
    assert (outs["priority"], outs["fwmark"], outs["table_id"]) == (PRIORITY, 0x7E57, 231)
    assert [_rule(r) for r in rules_at(lab, PRIORITY)] == [("0x7e57", "231")]

    applied.mark()
    provider.create(inputs)
    provider.update(created.id, outs, inputs)
    assert applied.steps == []

    # A new mark: the new rule replaces the old one at the same priority.
    remarked = checked(provider, host=host, priority=PRIORITY, fwmark=0x7E58, table=231)
    outs = outs_of(provider.update(created.id, outs, remarked))
    assert [_rule(r) for r in rules_at(lab, PRIORITY)] == [("0x7e58", "231")]

    # A table by name, resolved through the host's rt_tables.
    tables = provider_for(RoutingTableProvider, lab_credentials)
    tables.create(checked(tables, host=host, table_id=232, name="gp-test-b"))
    renamed = checked(provider, host=host, priority=PRIORITY, fwmark=0x7E58, table="gp-test-b")
    outs = outs_of(provider.update(created.id, outs, renamed))
    assert (outs["table"], outs["table_id"]) == ("gp-test-b", 232)
    assert [_rule(r) for r in rules_at(lab, PRIORITY)] == [("0x7e58", "232")]
    applied.mark()
    provider.update(created.id, outs, renamed)
    assert applied.steps == []
    assert outs_of(provider.read(created.id, outs)) == outs

    # Changed by hand: refresh reports the host's rule; up puts ours back.
    lab.run(HOST, ["ip", "rule", "del", "priority", str(PRIORITY)])
    lab.run(HOST, ["ip", "rule", "add", "priority", str(PRIORITY), "fwmark", "5", "table", "231"])
    drifted = outs_of(provider.read(created.id, outs))
    assert (drifted["fwmark"], drifted["table"], drifted["table_id"]) == (5, 231, 231)
    outs = outs_of(provider.update(created.id, drifted, renamed))
    assert [_rule(r) for r in rules_at(lab, PRIORITY)] == [("0x7e58", "232")]

    # Deleted by hand: gone.
    lab.run(HOST, ["ip", "rule", "del", "priority", str(PRIORITY)])
    assert provider.read(created.id, outs).id == ""
    provider.create(renamed)

    # Delete works from stored outputs even once the table's name is gone.
    tables.delete("x", {"host": host, "table_id": 232, "name": "gp-test-b"})
    provider.delete(created.id, outs)
    assert rules_at(lab, PRIORITY) == []
    applied.mark()
    provider.delete(created.id, outs)
    assert applied.steps == []


def test_clash_and_foreign_rules_left_alone(
    provider: PolicyRuleProvider, lab: Any, lab_endpoint: Any
) -> None:
    host = lab_endpoint(HOST)
    lab.run(HOST, ["ip", "rule", "add", "priority", "31002", "fwmark", "9", "table", "233"])
    with pytest.raises(PlanError, match="priority 31002 already holds"):
        provider.create(checked(provider, host=host, priority=31002, fwmark=1, table=231))
    provider.delete("x", {"host": host, "priority": 31002, "fwmark": 1, "table_id": 231})
    assert [_rule(r) for r in rules_at(lab, 31002)] == [("0x9", "233")]
    with pytest.raises(PlanError, match="not named in /etc/iproute2/rt_tables"):
        provider.create(checked(provider, host=host, priority=31003, fwmark=1, table="gp-nope"))
    assert rules_at(lab, 31003) == []
