"""PolicyRule.check: bad input fails naming the field; numbers and tables canonical."""

from __future__ import annotations

from typing import Any

import pytest
from pulumi.runtime import rpc

from providers.policy_rule import PolicyRuleProvider

pytestmark = [pytest.mark.unit]

HOST = {"name": "new", "address": "198.18.2.2"}


def _check(**fields: Any) -> tuple[dict[str, Any], dict[str, str]]:
    inputs = {"host": HOST, "priority": 100, "fwmark": 1, "table": "vm-out", **fields}
    result = PolicyRuleProvider().check({}, inputs)
    return result.inputs, {f.property: f.reason for f in result.failures or []}


def test_good_inputs_are_canonical() -> None:
    inputs, failures = _check(priority=100.0, fwmark=4294967295.0, table=201.0)
    assert failures == {}
    assert (inputs["priority"], inputs["fwmark"], inputs["table"]) == (100, 0xFFFFFFFF, 201)
    assert all(isinstance(inputs[k], int) for k in ("priority", "fwmark", "table"))
    assert _check(table="vm-out")[0]["table"] == "vm-out"
    assert _check(table="201")[0]["table"] == 201


@pytest.mark.parametrize("bad", [0, 32766, 32767, 40000, -3, 1.5, "x", None])
def test_bad_priority(bad: Any) -> None:
    assert set(_check(priority=bad)[1]) == {"priority"}


@pytest.mark.parametrize("bad", [0, 4294967296, -1, "0x1", 2.5, None])
def test_bad_fwmark(bad: Any) -> None:
    assert set(_check(fwmark=bad)[1]) == {"fwmark"}


@pytest.mark.parametrize("bad", [0, 253, 300, "unspec", "vm out", "$(reboot)", "vm-out;id", None])
def test_bad_and_hostile_tables(bad: Any) -> None:
    assert set(_check(table=bad)[1]) == {"table"}


def test_unknown_at_preview_is_skipped() -> None:
    assert _check(table=rpc.UNKNOWN, fwmark=rpc.UNKNOWN)[1] == {}


def test_diff_priority_replaces_the_rest_updates() -> None:
    provider = PolicyRuleProvider()
    olds = {"host": HOST, "priority": 100, "fwmark": 1, "table": 201, "table_id": 201}
    news = {"host": HOST, "priority": 100, "fwmark": 2, "table": 201, "table_id": None}
    assert provider.diff("x", olds, news).changes
    assert not provider.diff("x", olds, news).replaces
    assert provider.diff("x", olds, {**news, "fwmark": 1, "priority": 101}).replaces == ["priority"]
    assert not provider.diff("x", olds, {**news, "fwmark": 1}).changes
