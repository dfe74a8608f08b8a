"""RoutingTable against lab host `new`: create, apply again (nothing runs), rename,
drift seen by read and repaired, clashes, delete, delete again. Every other line of
rt_tables (the lab's own `201 vm-out` among them) stays as it was."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from providers.plans import PlanError
from providers.routing_table import RoutingTableProvider
from tests.providers.iproute_lab import (
    HOST,
    checked,
    outs_of,
    provider_for,
    rt_tables_text,
    scrub,
    write_rt_tables,
)

pytestmark = [pytest.mark.lab]


@pytest.fixture
def provider(lab: Any, lab_credentials: Any) -> Iterator[RoutingTableProvider]:
    scrub(lab)
    yield provider_for(RoutingTableProvider, lab_credentials)
    scrub(lab)


def test_lifecycle(
    provider: RoutingTableProvider, lab: Any, lab_endpoint: Any, applied: Any
) -> None:
    before = rt_tables_text(lab)
    inputs = checked(provider, host=lab_endpoint(HOST), table_id=231.0, name="gp-test-a")
    created = provider.create(inputs)
    assert created.id == "new:rt_tables:231"
    assert rt_tables_text(lab) == before + "231\tgp-test-a\n"

    applied.mark()
    provider.create(inputs)
    provider.update(created.id, outs_of(created), inputs)
    assert applied.steps == []

    renamed = checked(provider, host=lab_endpoint(HOST), table_id=231, name="gp-test-b")
    assert provider.diff(created.id, outs_of(created), renamed).replaces == []
    outs = outs_of(provider.update(created.id, outs_of(created), renamed))
    assert rt_tables_text(lab) == before + "231\tgp-test-b\n"
    assert outs_of(provider.read(created.id, outs)) == outs

    # Renamed by hand: refresh sees the host's name; up puts ours back.
    write_rt_tables(lab, before + "231\tgp-hand\n")
    drifted = outs_of(provider.read(created.id, outs))
    assert drifted["name"] == "gp-hand"
    outs = outs_of(provider.update(created.id, drifted, renamed))
    assert rt_tables_text(lab) == before + "231\tgp-test-b\n"

    # Line removed by hand: the resource is gone.
    write_rt_tables(lab, before)
    assert provider.read(created.id, outs).id == ""
    provider.create(renamed)

    provider.delete(created.id, outs)
    assert rt_tables_text(lab) == before
    applied.mark()
    provider.delete(created.id, outs)
    assert applied.steps == []


def test_clashes_change_nothing(
    provider: RoutingTableProvider, lab: Any, lab_endpoint: Any
) -> None:
    before = rt_tables_text(lab)
    write_rt_tables(lab, before + "232 gp-hand\n")
    with pytest.raises(PlanError, match="table 232 is already named 'gp-hand'"):
        provider.create(checked(provider, host=lab_endpoint(HOST), table_id=232, name="gp-test-a"))
    with pytest.raises(PlanError, match="'gp-hand' already belongs to table 232"):
        provider.create(checked(provider, host=lab_endpoint(HOST), table_id=231, name="gp-hand"))
    assert rt_tables_text(lab) == before + "232 gp-hand\n"
    # Deleting a table someone else renamed leaves their line.
    provider.delete("x", {"host": lab_endpoint(HOST), "table_id": 232, "name": "gp-test-a"})
    assert rt_tables_text(lab) == before + "232 gp-hand\n"


def test_a_line_that_was_there_before_is_left_on_delete(
    provider: RoutingTableProvider, lab: Any, lab_endpoint: Any, applied: Any
) -> None:
    # Like the lab baseline's own `201 vm-out`: adopted as is, and kept on destroy.
    before = rt_tables_text(lab)
    write_rt_tables(lab, before + "232\tgp-test-b\n")
    applied.mark()
    created = provider.create(
        checked(provider, host=lab_endpoint(HOST), table_id=232, name="gp-test-b")
    )
    assert applied.steps == []
    assert outs_of(created)["adopted"] is True
    provider.delete(created.id, outs_of(created))
    assert rt_tables_text(lab) == before + "232\tgp-test-b\n"
