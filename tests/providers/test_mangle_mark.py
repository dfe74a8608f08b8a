"""MangleMark against lab host `new`: create, apply again (nothing runs), drift seen by
read, repair, create-before-delete replacement, clash, delete, delete again.

The rules use a prefix of their own (198.51.100.248/29), so the tests never touch the
mangle rules of the lab or of anything else running there, and the cleanup removes
every rule with that source, whatever a failed test left behind.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from typing import Any

import pytest
from pulumi.dynamic import CreateResult, ReadResult, UpdateResult

from providers.facts import mangle_mark as facts
from providers.mangle_mark import MangleMarkProvider
from providers.plans import PlanError
from providers.plans import mangle_mark as plans

pytestmark = [pytest.mark.lab]

HOST = "new"
SOURCE = "198.51.100.248/29"


def _save(lab: Any) -> str:
    return str(lab.run(HOST, ["iptables-save", "-t", "mangle"]).stdout)


def _ours_on_host(lab: Any) -> list[facts.Rule]:
    return [r for r in facts.process(_save(lab)) if r["source"] == SOURCE]


def _by_hand(lab: Any, action: str, *spec: str, chain: str = "PREROUTING") -> None:
    lab.run(HOST, ["iptables", "-w", "-t", "mangle", action, chain, "-s", SOURCE, *spec])


def _outs(result: CreateResult | UpdateResult | ReadResult) -> dict[str, Any]:
    assert result.outs is not None
    return result.outs


@pytest.fixture
def cleanup(lab: Any) -> Iterator[None]:
    yield
    for line in _save(lab).splitlines():
        if line.startswith("-A ") and f"-s {SOURCE} " in line:
            argv = shlex.split(line)
            lab.run(HOST, ["iptables", "-w", "-t", "mangle", "-D", *argv[1:]], check=False)
    assert _ours_on_host(lab) == []


@pytest.fixture
def provider(lab_credentials: Any) -> MangleMarkProvider:
    provider = MangleMarkProvider()
    provider.use_credentials(lab_credentials)
    return provider


def _inputs(provider: MangleMarkProvider, lab_endpoint: Any, **extra: Any) -> dict[str, Any]:
    news = {"host": lab_endpoint(HOST), "source": SOURCE, "in_interface": "vif+", "mark": 1.0}
    news.update(extra)
    checked = provider.check({}, news)
    assert not checked.failures
    return dict(checked.inputs)


def test_create_apply_again_read_delete(
    provider: MangleMarkProvider, lab_endpoint: Any, applied: Any, lab: Any, cleanup: None
) -> None:
    inputs = _inputs(provider, lab_endpoint)
    created = provider.create(inputs)
    assert _outs(created)["copies"] == 1
    assert f"-A PREROUTING -s {SOURCE} -i vif+ -m comment --comment glidepath " in _save(lab)
    assert [(r["mark"], r["mask"]) for r in _ours_on_host(lab)] == [(1, 0xFFFFFFFF)]

    applied.mark()
    again = provider.create(inputs)
    assert applied.steps == []  # already there: nothing ran
    assert _outs(again) == _outs(created)
    provider.update(created.id, _outs(created), inputs)
    assert applied.steps == []

    read = provider.read(created.id, _outs(created))
    assert read.id == created.id and _outs(read) == _outs(created)

    provider.delete(created.id, _outs(created))
    assert _ours_on_host(lab) == []
    applied.mark()
    provider.delete(created.id, _outs(created))  # already absent is success
    assert applied.steps == []


def test_drift_duplicate_is_seen_and_repaired(
    provider: MangleMarkProvider, lab_endpoint: Any, applied: Any, lab: Any, cleanup: None
) -> None:
    inputs = _inputs(provider, lab_endpoint)
    created = provider.create(inputs)
    spec = plans.rule_spec(plans.desired_rule("PREROUTING", SOURCE, "vif+", 1))
    _by_hand(lab, "-A", *spec[2:])  # a second copy, as a re-run script would leave

    read = provider.read(created.id, _outs(created))
    assert _outs(read)["copies"] == 2
    diff = provider.diff(created.id, _outs(read), inputs)
    assert diff.changes and not diff.replaces

    applied.mark()
    updated = provider.update(created.id, _outs(read), inputs)
    assert _outs(updated)["copies"] == 1
    assert [argv[4] for _, argv in applied.steps] == ["-D"]
    assert len(_ours_on_host(lab)) == 1


def test_rule_deleted_by_hand_reads_as_gone(
    provider: MangleMarkProvider, lab_endpoint: Any, lab: Any, cleanup: None
) -> None:
    # What the cutover's `iptables -t mangle -F` does to our rule; we delete just ours
    # rather than flush a chain other things on the host may use.
    inputs = _inputs(provider, lab_endpoint)
    created = provider.create(inputs)
    spec = plans.rule_spec(plans.desired_rule("PREROUTING", SOURCE, "vif+", 1))
    _by_hand(lab, "-D", *spec[2:])
    read = provider.read(created.id, _outs(created))
    assert read.id == "" and _outs(read) == {}
    provider.delete(created.id, _outs(created))  # still fine from stored outputs


def test_replace_creates_the_new_rule_before_deleting_the_old(
    provider: MangleMarkProvider, lab_endpoint: Any, lab: Any, cleanup: None
) -> None:
    old = provider.create(_inputs(provider, lab_endpoint))
    new_inputs = _inputs(provider, lab_endpoint, mark=2, in_interface="vif3")
    diff = provider.diff(old.id, _outs(old), new_inputs)
    assert (
        sorted(diff.replaces or []) == ["in_interface", "mark"] and not diff.delete_before_replace
    )

    new = provider.create(new_inputs)
    # Both present, old first: for a packet matching both, the new MARK is the last word.
    assert [(r["in_interface"], r["mark"]) for r in _ours_on_host(lab)] == [
        ("vif+", 1),
        ("vif3", 2),
    ]
    provider.delete(old.id, _outs(old))
    assert [(r["in_interface"], r["mark"]) for r in _ours_on_host(lab)] == [("vif3", 2)]
    provider.delete(new.id, _outs(new))
    assert _ours_on_host(lab) == []


def test_handmade_rule_is_never_deleted_and_a_clash_is_refused(
    provider: MangleMarkProvider, lab_endpoint: Any, applied: Any, lab: Any, cleanup: None
) -> None:
    _by_hand(lab, "-A", "-i", "vif+", "-j", "MARK", "--set-mark", "1")  # the blog's
    inputs = _inputs(provider, lab_endpoint)
    created = provider.create(inputs)
    provider.delete(created.id, _outs(created))
    assert [(r["comment"], r["mark"]) for r in _ours_on_host(lab)] == [(None, 1)]

    _by_hand(lab, "-A", "-i", "vif+", "-j", "MARK", "--set-mark", "9")
    applied.mark()
    with pytest.raises(PlanError, match="MARK 0x9"):
        provider.create(inputs)
    assert applied.steps == []
