"""Route against lab host `new`: create, apply again (nothing runs), metric change
(no old route left), via/dev change, drift seen by read and repaired, a table that
does not exist yet, clash, delete, delete again."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from providers.plans import PlanError
from providers.route import RouteProvider
from providers.routing_table import RoutingTableProvider
from tests.providers.iproute_lab import (
    GATEWAY,
    HOST,
    PREFIX,
    checked,
    outs_of,
    provider_for,
    routes_in,
    scrub,
)

pytestmark = [pytest.mark.lab]


def _ours(lab: Any, table: int) -> list[tuple[Any, ...]]:
    return [
        (r.get("gateway"), r.get("dev"), r.get("metric", 0))
        for r in routes_in(lab, table)
        if r["dst"] == PREFIX
    ]


@pytest.fixture
def provider(lab: Any, lab_credentials: Any) -> Iterator[RouteProvider]:
    scrub(lab)
    yield provider_for(RouteProvider, lab_credentials)
    scrub(lab)


def test_lifecycle(
    provider: RouteProvider, lab: Any, lab_endpoint: Any, lab_credentials: Any, applied: Any
) -> None:
    host = lab_endpoint(HOST)
    tables = provider_for(RoutingTableProvider, lab_credentials)
    tables.create(checked(tables, host=host, table_id=231, name="gp-test-a"))
    inputs = checked(provider, host=host, dst=PREFIX, via=GATEWAY, table="gp-test-a", metric=10.0)
    created = provider.create(inputs)
    outs = outs_of(created)
    assert created.id == f"new:route:231:{PREFIX}"
    assert (outs["table"], outs["table_id"], outs["metric"], outs["dev"]) == (
        "gp-test-a",
        231,
        10,
        None,
    )
    assert _ours(lab, 231) == [(GATEWAY, "br0", 10)]

    applied.mark()
    provider.create(inputs)
    provider.update(created.id, outs, inputs)
    assert applied.steps == []
    assert outs_of(provider.read(created.id, outs)) == outs

    # The metric is part of the kernel's key: the old route must not stay behind.
    moved = {**inputs, "metric": 20}
    outs = outs_of(provider.update(created.id, outs, moved))
    assert _ours(lab, 231) == [(GATEWAY, "br0", 20)]

    # Via to dev only.
    on_link = checked(provider, host=host, dst=PREFIX, dev="br0", table="gp-test-a", metric=20)
    outs = outs_of(provider.update(created.id, outs, on_link))
    assert _ours(lab, 231) == [(None, "br0", 20)]
    applied.mark()
    provider.update(created.id, outs, on_link)
    assert applied.steps == []

    # Replaced by hand at our key: refresh reports it; up puts ours back.
    lab.run(
        HOST,
        ["ip", "route", "replace", PREFIX, "via", GATEWAY, "table", "231", "metric", "20"],
    )
    drifted = outs_of(provider.read(created.id, outs))
    assert (drifted["via"], drifted["dev"]) == (GATEWAY, "br0")
    outs = outs_of(provider.update(created.id, drifted, on_link))
    assert _ours(lab, 231) == [(None, "br0", 20)]

    # Deleted by hand: gone. (A route at another metric is another route.)
    lab.run(HOST, ["ip", "route", "del", PREFIX, "table", "231", "metric", "20"])
    lab.run(HOST, ["ip", "route", "add", PREFIX, "dev", "br0", "table", "231", "metric", "30"])
    assert provider.read(created.id, outs).id == ""
    provider.create(on_link)

    # Delete from stored outputs, without rt_tables' name; the metric-30 route stays.
    tables.delete("x", {"host": host, "table_id": 231, "name": "gp-test-a"})
    provider.delete(created.id, outs)
    assert _ours(lab, 231) == [(None, "br0", 30)]
    applied.mark()
    provider.delete(created.id, outs)
    assert applied.steps == []


def test_table_that_does_not_exist_yet(
    provider: RouteProvider, lab: Any, lab_endpoint: Any
) -> None:
    host = lab_endpoint(HOST)
    missing = {
        "host": host,
        "dst": PREFIX,
        "via": GATEWAY,
        "dev": None,
        "table": 233,
        "metric": 0,
        "table_id": 233,
    }
    if lab.run(HOST, ["ip", "-4", "route", "show", "table", "233"], check=False).returncode:
        assert provider.read("x", missing).id == ""  # no error: an empty table
    provider.delete("x", missing)
    created = provider.create(checked(provider, host=host, dst=PREFIX, via=GATEWAY, table=233))
    assert _ours(lab, 233) == [(GATEWAY, "br0", 0)]
    provider.delete(created.id, outs_of(created))
    assert _ours(lab, 233) == []


def test_clash_with_a_route_not_ours(provider: RouteProvider, lab: Any, lab_endpoint: Any) -> None:
    host = lab_endpoint(HOST)
    lab.run(HOST, ["ip", "route", "add", PREFIX, "dev", "br0", "table", "232", "metric", "7"])
    with pytest.raises(PlanError, match="not glidepath's"):
        provider.create(checked(provider, host=host, dst=PREFIX, via=GATEWAY, table=232, metric=7))
    assert _ours(lab, 232) == [(None, "br0", 7)]
