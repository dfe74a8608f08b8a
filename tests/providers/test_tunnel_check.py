"""Tunnel.check and diff: bad input fails naming the field and never reaches a host."""

from __future__ import annotations

from typing import Any

import pytest
from pulumi.runtime import rpc

from providers.tunnel import TunnelProvider

pytestmark = [pytest.mark.unit]

OLD = {"name": "old", "address": "198.18.1.2"}
NEW = {"name": "new", "address": "198.18.2.2"}


def _check(**fields: Any) -> tuple[dict[str, Any], dict[str, str]]:
    inputs = {
        "host": OLD,
        "peer": NEW,
        "tun": 5,
        "address": "198.18.105.1/24",
        "peer_address": "198.18.105.2/24",
        **fields,
    }
    result = TunnelProvider().check({}, inputs)
    return result.inputs, {f.property: f.reason for f in result.failures or []}


def test_canonical_inputs() -> None:
    inputs, failures = _check(tun=5.0, address=" 198.18.105.1/24 ", peer_address="198.18.105.2/24")
    assert failures == {}
    assert inputs["tun"] == 5
    assert inputs["address"] == "198.18.105.1/24"
    assert inputs["state"] == "up"
    assert inputs["host"] == {"name": "old", "address": "198.18.1.2", "port": 22, "user": "root"}
    assert inputs["peer"] == {"name": "new", "address": "198.18.2.2", "port": 22, "user": "root"}


def test_edges_of_the_ranges() -> None:
    assert _check(tun=0)[1] == {}
    assert _check(tun=255)[1] == {}
    assert _check(address="198.18.105.0/31", peer_address="198.18.105.1/31")[1] == {}


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("tun", 256),
        ("tun", -1),
        ("tun", 2.5),
        ("tun", "5; reboot"),
        ("tun", True),
        ("tun", None),
        ("address", "198.18.105.1"),  # no prefix length
        ("address", "198.18.105.300/24"),
        ("address", "2001:db8::1/64"),  # IPv4 only
        ("address", "198.18.105.1/32"),
        ("address", "198.18.105.0/24"),  # network address
        ("address", "198.18.105.255/24"),  # broadcast address
        ("address", "198.18.105.1/24; ip link del br0"),
        ("address", "$(reboot)"),
        ("peer_address", "198.18.106.2/24"),  # another network
        ("peer_address", "198.18.105.2/25"),  # another prefix length
        ("peer_address", "198.18.105.1/24"),  # the host's own address
        ("peer_address", None),
        ("peer", OLD),  # peer == host
        ("peer", {"name": "old", "address": "198.18.9.9"}),  # same name
        ("peer", {"name": "other", "address": "198.18.1.2", "port": 2222}),  # same address
        ("peer", {"name": "new", "address": "198.18.2.2", "user": "root;reboot"}),
        ("peer", {"name": "new$(x)", "address": "198.18.2.2"}),
        ("peer", {"name": "new", "address": "new.example; reboot"}),
        ("peer", {"name": "new", "address": "198.18.2.2", "command": "x"}),
        ("peer", "198.18.2.2"),
        ("host", {"name": "old", "address": "198.18.1.2", "port": 70000}),
        ("state", "down"),
        ("state", "up; reboot"),
    ],
)
def test_bad_and_hostile_inputs(field: str, bad: Any) -> None:
    assert set(_check(**{field: bad})[1]) == {field}


def test_several_bad_fields_at_once() -> None:
    _, failures = _check(tun=300, address="x", peer="y")
    assert set(failures) == {"tun", "address", "peer"}
    assert "tun" in failures["tun"]


def test_unknown_values_at_preview_are_skipped() -> None:
    inputs, failures = _check(peer=rpc.UNKNOWN, peer_address=rpc.UNKNOWN, tun=rpc.UNKNOWN)
    assert failures == {}
    assert inputs["peer"] == rpc.UNKNOWN


def test_diff_identity_replaces_addresses_update() -> None:
    olds, _ = _check()
    provider = TunnelProvider()
    assert provider.diff("x", {**olds, "state": "up"}, olds).changes is False
    moved, _ = _check(address="198.18.106.1/24", peer_address="198.18.106.2/24")
    result = provider.diff("x", olds, moved)
    assert result.changes and not result.replaces
    for field, value in (
        ("tun", 6),
        ("peer", {"name": "h3", "address": "198.18.3.2", "port": 22, "user": "root"}),
        ("host", {"name": "h3", "address": "198.18.3.2", "port": 22, "user": "root"}),
    ):
        result = provider.diff("x", olds, {**olds, field: value})
        assert result.replaces == [field]
        assert result.delete_before_replace


def test_refreshed_down_state_is_a_change() -> None:
    olds, _ = _check()
    result = TunnelProvider().diff("x", {**olds, "state": "down"}, olds)
    assert result.changes and not result.replaces


def test_refreshed_outputs_stay_canonical_where_state_is_down() -> None:
    # `state` is an output too: what `canonical` reads back after a refresh saw the link down.
    olds, _ = _check()
    stored = {**olds, "tun": 5.0, "state": "down", "keeper_pid": None}
    canonical = TunnelProvider().canonical(stored)
    assert canonical["state"] == "down"
    assert canonical["tun"] == 5 and isinstance(canonical["tun"], int)
    assert canonical["peer"] == olds["peer"]
