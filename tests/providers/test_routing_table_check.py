"""RoutingTable.check and the table validators: bad input fails naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from pulumi.runtime import rpc

from providers import validate
from providers.routing_table import RoutingTableProvider

pytestmark = [pytest.mark.unit]

HOST = {"name": "new", "address": "198.18.2.2"}


def _check(**fields: Any) -> tuple[dict[str, Any], dict[str, str]]:
    inputs = {"host": HOST, "table_id": 201, "name": "vm-out", **fields}
    result = RoutingTableProvider().check({}, inputs)
    return result.inputs, {f.property: f.reason for f in result.failures or []}


def test_good_inputs_are_canonical() -> None:
    inputs, failures = _check(table_id=201.0)  # numbers arrive as floats
    assert failures == {}
    assert inputs["table_id"] == 201 and isinstance(inputs["table_id"], int)
    assert inputs["host"] == {"name": "new", "address": "198.18.2.2", "port": 22, "user": "root"}


@pytest.mark.parametrize("bad", [0, 253, 255, 256, -1, 201.5, "two", True, None])
def test_bad_ids(bad: Any) -> None:
    _, failures = _check(table_id=bad)
    assert set(failures) == {"table_id"}
    assert "table_id" in failures["table_id"]


@pytest.mark.parametrize(
    "bad",
    [
        "main",  # built in
        "local",
        "201",  # would read as an id
        "vm out",
        "vm-out;reboot",
        "$(reboot)",
        "`id`",
        "vm-out\nroot",
        "",
        "x" * 64,
        "-vm",
        7,
    ],
)
def test_bad_and_hostile_names_never_reach_a_host(bad: Any) -> None:
    _, failures = _check(name=bad)
    assert set(failures) == {"name"}


def test_every_bad_field_at_once() -> None:
    _, failures = _check(host={"name": "new", "address": "nope"}, table_id=0, name="a b")
    assert set(failures) == {"host", "table_id", "name"}


def test_unknown_at_preview_is_skipped() -> None:
    _, failures = _check(name=rpc.UNKNOWN, table_id=rpc.UNKNOWN)
    assert failures == {}


def test_diff_id_replaces_name_updates() -> None:
    provider = RoutingTableProvider()
    olds = {"host": HOST, "table_id": 201, "name": "vm-out"}
    renamed = provider.diff("x", olds, {**olds, "name": "vm-egress"})
    assert renamed.changes and not renamed.replaces
    moved = provider.diff("x", olds, {**olds, "table_id": 202})
    assert moved.replaces == ["table_id"] and moved.delete_before_replace
    assert not provider.diff("x", olds, {**olds, "table_id": 201.0}).changes


@pytest.mark.parametrize(
    ("value", "canonical"),
    [(201, 201), (201.0, 201), ("201", 201), (" 7 ", 7), ("vm-out", "vm-out"), ("main", "main")],
)
def test_table_accepts_id_or_name(value: Any, canonical: int | str) -> None:
    assert validate.table(value) == canonical


@pytest.mark.parametrize("bad", [0, 254, "254", "unspec", "a;b", 3.5, "", None])
def test_table_rejects(bad: Any) -> None:
    with pytest.raises(validate.Invalid):
        validate.table(bad)
