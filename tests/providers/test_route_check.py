"""Route.check: bad input fails naming the field; spellings of one route are one route."""

from __future__ import annotations

from typing import Any

import pytest
from pulumi.runtime import rpc

from providers.route import RouteProvider

pytestmark = [pytest.mark.unit]

HOST = {"name": "new", "address": "198.18.2.2"}


def _check(**fields: Any) -> tuple[dict[str, Any], dict[str, str]]:
    inputs = {"host": HOST, "dst": "default", "via": "198.18.100.1", **fields}
    result = RouteProvider().check({}, inputs)
    return result.inputs, {f.property: f.reason for f in result.failures or []}


def test_defaults_table_main_metric_zero() -> None:
    inputs, failures = _check()
    assert failures == {}
    assert (inputs["table"], inputs["metric"]) == ("main", 0)
    inputs, failures = _check(table=None, metric=None, dev=None)
    assert failures == {}
    assert (inputs["table"], inputs["metric"]) == ("main", 0)


@pytest.mark.parametrize(
    ("dst", "canonical"),
    [
        ("default", "default"),
        ("0.0.0.0/0", "default"),
        ("203.0.113.0/29", "203.0.113.0/29"),
        ("203.0.113.2", "203.0.113.2/32"),
        ("203.0.113.2/32", "203.0.113.2/32"),
        (" 203.0.113.0/29 ", "203.0.113.0/29"),
    ],
)
def test_destination_spellings(dst: str, canonical: str) -> None:
    inputs, failures = _check(dst=dst)
    assert failures == {}
    assert inputs["dst"] == canonical


def test_numbers_and_tables_canonical() -> None:
    inputs, failures = _check(metric=1000.0, table=201.0, dev="tun2")
    assert failures == {}
    assert (inputs["metric"], inputs["table"], inputs["dev"]) == (1000, 201, "tun2")
    assert _check(metric=4294967295)[1] == {}


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("dst", "203.0.113.1/29"),  # host bits set
        ("dst", "2001:db8::/32"),  # IPv4 only
        ("dst", "somewhere"),
        ("dst", "default; reboot"),
        ("via", "198.18.100"),
        ("via", "2001:db8::1"),
        ("via", "$(reboot)"),
        ("dev", "tun2;reboot"),
        ("dev", "averyveryverylongname"),  # > 15
        ("dev", "vif+"),  # no wildcard in a route
        ("dev", "tun 2"),
        ("table", 0),
        ("table", 253),
        ("table", "vm out"),
        ("metric", -1),
        ("metric", 4294967296),
        ("metric", 1.5),
    ],
)
def test_bad_and_hostile_inputs(field: str, bad: Any) -> None:
    assert set(_check(**{field: bad})[1]) == {field}


def test_via_or_dev_needed() -> None:
    _, failures = _check(via=None)
    assert set(failures) == {"via"}
    assert "dev" in failures["via"]
    assert _check(via=None, dev="tun2")[1] == {}


def test_unknown_at_preview_is_skipped() -> None:
    assert _check(via=rpc.UNKNOWN, table=rpc.UNKNOWN, dst=rpc.UNKNOWN)[1] == {}


def test_diff_dst_and_table_replace_the_rest_updates() -> None:
    provider = RouteProvider()
    olds = {
        "host": HOST,
        "dst": "default",
        "via": "198.18.100.1",
        "dev": None,
        "table": 201,
        "metric": 0,
        "table_id": 201,
    }
    news = {**olds, "table_id": None}
    assert not provider.diff("x", olds, news).changes
    for field, value in (("via", "198.18.100.2"), ("dev", "tun2"), ("metric", 5)):
        diff = provider.diff("x", olds, {**news, field: value})
        assert diff.changes and not diff.replaces, field
    for field, value in (("dst", "203.0.113.0/29"), ("table", 202)):
        assert provider.diff("x", olds, {**news, field: value}).replaces == [field]
