"""Upstream.check: its inputs are the stack's network (providers/schema/upstream.py), with
the stack config's rules; the cutover is kept as the stack gives it, so stacks applied
before the shared schema see no change (no lab, no host)."""

from __future__ import annotations

from typing import Any

import pytest
from pulumi.runtime import rpc

from providers.upstream import UpstreamProvider

pytestmark = [pytest.mark.unit]

OLD = {"name": "old", "address": "198.18.1.2"}
NEW = {"name": "new", "address": "198.18.2.2", "uplink": "br1"}
ROUTER = {"name": "core", "address": "198.18.0.2"}


def _check(**fields: Any) -> tuple[dict[str, Any], dict[str, str]]:
    news = {
        "network": "net0",
        "prefix": "203.0.113.0/29",
        "hosts": {"old": OLD, "new": NEW},
        "upstream": "old",
        "mark": 1.0,
        "cutover": {"kind": "lab-router", "router": ROUTER},
        **fields,
    }
    result = UpstreamProvider().check({}, news)
    return dict(result.inputs), {f.property: f.reason for f in result.failures or []}


def test_defaults_and_canonical_values() -> None:
    inputs, failures = _check(first_packet_timeout_s=30.0, vm_addresses=[" 203.0.113.2"])
    assert failures == {}
    assert inputs["hosts"] == {
        "old": {**OLD, "port": 22, "user": "root", "uplink": "br0"},
        "new": {**NEW, "port": 22, "user": "root"},
    }
    assert inputs["mark"] == 1 and isinstance(inputs["mark"], int)
    assert (inputs["first_packet_timeout_s"], inputs["vm_addresses"]) == (30, ["203.0.113.2"])
    assert (inputs["marked"], _check()[0]["first_packet_timeout_s"]) == ([], 60)


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        (
            {"kind": "lab-router", "router": ROUTER},
            {"kind": "lab-router", "router": {**ROUTER, "port": 22, "user": "root"}},
        ),
        ({"kind": "manual"}, {"kind": "manual"}),
        ({"kind": "hetzner-robot"}, {"kind": "hetzner-robot"}),
        (
            {"kind": "hetzner-robot", "timeout_s": 10.0, "first_packet_timeout_s": 300.0},
            {"kind": "hetzner-robot", "timeout_s": 10, "first_packet_timeout_s": 300},
        ),
    ],
)
def test_the_cutover_is_kept_as_given_without_defaults(
    given: dict[str, Any], stored: dict[str, Any]
) -> None:
    inputs, failures = _check(cutover=given)
    assert failures == {}
    assert inputs["cutover"] == stored


def test_an_upstream_stored_before_the_shared_schema_is_unchanged() -> None:
    # What the provider's own check stored for the lab stack (cb8a965), as read back.
    router = {**ROUTER, "port": 22.0, "user": "root"}
    olds = {
        "network": "net0",
        "prefix": "203.0.113.0/29",
        "hosts": {
            "old": {**OLD, "port": 22.0, "user": "root", "uplink": "br0"},
            "new": {**NEW, "port": 22.0, "user": "root"},
        },
        "upstream": "old",
        "marked": ["new"],
        "mark": 1.0,
        "cutover": {"kind": "lab-router", "router": router},
        "first_packet_timeout_s": 60.0,
        "vm_addresses": ["203.0.113.2"],
        "last_cutover": None,
    }
    news, _ = _check(marked=["new"], first_packet_timeout_s=60, vm_addresses=["203.0.113.2"])
    assert UpstreamProvider().diff("net0", olds, news).changes is False


def test_main_ip_is_kept_where_given_and_absent_otherwise() -> None:
    hosts = {"old": OLD, "new": {**NEW, "main_ip": " 198.51.100.20"}}
    inputs, failures = _check(hosts=hosts)
    assert failures == {}
    assert inputs["hosts"]["new"]["main_ip"] == "198.51.100.20"
    # An Upstream stored before main_ip existed compares equal: no update for it.
    assert "main_ip" not in inputs["hosts"]["old"]
    provider = UpstreamProvider()
    assert provider._host_by_address(inputs, "198.51.100.20") == "new"
    assert provider._host_by_address(inputs, "198.18.2.2") is None  # SSH only
    assert provider._host_by_address(inputs, "198.18.1.2") == "old"
    _, failures = _check(hosts={"old": OLD, "new": {**NEW, "main_ip": "new"}})
    assert "hosts.new.main_ip" in failures["hosts"]


@pytest.mark.parametrize(
    ("field", "bad", "said"),
    [
        ("network", "net 0", "not a valid network name"),
        ("prefix", "203.0.113.1/29", "zero host bits"),
        ("prefix", "2001:db8::/64", "IPv6"),  # the stack config's rule: IPv4 only
        ("hosts", {}, "at least 1"),
        ("hosts", {"old": {**OLD, "uplink": "br0;x"}}, "hosts.old.uplink"),
        ("upstream", "spare", "not one of the hosts"),
        ("marked", ["new host"], "marked[0]"),
        ("mark", 0, "from 1"),
        ("mark", "0x1", "from 1"),
        ("cutover", {"kind": "bgp"}, "cutover.kind"),
        ("cutover", {"kind": "lab-router"}, "cutover.router: is missing"),
        ("cutover", {"kind": "manual", "router": ROUTER}, "unknown fields ['router']"),
        ("cutover", {"kind": "hetzner-robot", "timeout_s": "x"}, "cutover.timeout_s"),
        ("cutover", {"kind": "hetzner-robot", "base_url": "http://robot.example"}, "https"),
        (
            "cutover",
            {"kind": "hetzner-robot", "failover_ip": "198.51.100.1"},
            "outside the network's prefix",
        ),
        ("first_packet_timeout_s", 3601, "from 1 to 3600"),
        ("vm_addresses", ["x"], "vm_addresses[0]"),
    ],
)
def test_a_wrong_field_is_named(field: str, bad: Any, said: str) -> None:
    _, failures = _check(**{field: bad})
    assert list(failures) == [field]
    assert said in failures[field]


def test_unknown_values_at_preview_are_left_for_up() -> None:
    inputs, failures = _check(vm_addresses=[rpc.UNKNOWN], upstream=rpc.UNKNOWN)
    assert failures == {}
    assert (inputs["upstream"], inputs["vm_addresses"]) == (rpc.UNKNOWN, [rpc.UNKNOWN])
    assert inputs["hosts"]["old"]["port"] == 22
