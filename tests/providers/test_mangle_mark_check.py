"""MangleMark.check: canonical inputs, and failures naming the field (no lab, no host)."""

from __future__ import annotations

from typing import Any

import pytest
from pulumi.runtime import rpc

from providers.mangle_mark import MangleMarkProvider

pytestmark = [pytest.mark.unit]

HOST = {"name": "new", "address": "198.18.2.2"}


def _check(**inputs: Any) -> tuple[dict[str, Any], dict[str, str]]:
    news = {"host": HOST, "source": "203.0.113.0/29", "in_interface": "vif+", "mark": 1.0}
    news.update(inputs)
    result = MangleMarkProvider().check({}, news)
    return result.inputs, {f.property: f.reason for f in result.failures or []}


def test_defaults_and_canonical_values() -> None:
    inputs, failures = _check()
    assert failures == {}
    assert inputs["mark"] == 1 and isinstance(inputs["mark"], int)  # engine floats
    assert inputs["chain"] == "PREROUTING"
    assert inputs["comment"] == "glidepath"
    assert inputs["copies"] == 1
    assert inputs["host"] == {"name": "new", "address": "198.18.2.2", "port": 22, "user": "root"}


@pytest.mark.parametrize(
    ("field", "given", "canonical"),
    [
        ("mark", "7", 7),
        ("mark", 4294967295.0, 0xFFFFFFFF),
        ("source", " 203.0.113.2/32 ", "203.0.113.2/32"),
        ("source", "203.0.113.2", "203.0.113.2/32"),
        ("chain", "forward", "FORWARD"),
        ("in_interface", "vif3", "vif3"),
        ("comment", "glidepath net0 egress", "glidepath net0 egress"),
    ],
)
def test_spellings_are_canonicalised(field: str, given: Any, canonical: Any) -> None:
    inputs, failures = _check(**{field: given})
    assert failures == {}
    assert inputs[field] == canonical


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("source", "203.0.113.1/29"),  # host bits set
        ("source", "2001:db8::/64"),  # ip6tables is not ours
        ("source", "203.0.113.0/29; iptables -F"),
        ("source", None),
        ("in_interface", "vif*"),  # iptables spells the wildcard '+'
        ("in_interface", "vif0 -j ACCEPT"),
        ("in_interface", "averyveryverylongname"),
        ("in_interface", "+"),
        ("mark", 0),
        ("mark", 0x100000000),
        ("mark", 1.5),
        ("mark", "one"),
        ("mark", True),
        ("mark", "0x10"),  # a number, as the stack config takes it (and ip rule's fwmark)
        ("chain", "OUTPUT"),  # -i is invalid there
        ("chain", "PREROUTING -j DROP"),
        ("comment", "firewalld"),  # not marked as ours: delete could not tell
        ("comment", "glidepath\nx"),
        ("comment", 'glidepath "x"'),
        ("comment", "glidepath " + "x" * 250),
        ("comment", ""),
        ("host", {"name": "new", "address": "not-an-address"}),
    ],
)
def test_bad_values_fail_naming_the_field(field: str, bad: Any) -> None:
    _, failures = _check(**{field: bad})
    assert list(failures) == [field]
    assert failures[field].startswith(f"{field}")


def test_all_bad_fields_reported_at_once() -> None:
    _, failures = _check(source="x", in_interface="!", mark=-1, chain="nat")
    assert set(failures) == {"source", "in_interface", "mark", "chain"}


def test_unknown_values_at_preview_are_left_for_up() -> None:
    inputs, failures = _check(source=rpc.UNKNOWN, mark=rpc.UNKNOWN)
    assert failures == {}
    assert inputs["source"] == rpc.UNKNOWN


def test_any_rule_change_replaces_and_the_new_rule_comes_first() -> None:
    provider = MangleMarkProvider()
    olds, _ = _check()
    for field, value in [("mark", 2), ("source", "198.51.100.0/29"), ("in_interface", "vif3"),
                         ("chain", "FORWARD"), ("comment", "glidepath net0")]:  # fmt: skip
        news, _ = _check(**{field: value})
        diff = provider.diff("id", {**olds, "copies": 1}, news)
        assert diff.changes and diff.replaces == [field]
        assert diff.delete_before_replace is False


def test_duplicate_copies_on_the_host_are_an_update() -> None:
    provider = MangleMarkProvider()
    news, _ = _check()
    diff = provider.diff("id", {**news, "copies": 2}, news)
    assert diff.changes and diff.replaces == []
    assert provider.diff("id", dict(news), news).changes is False
