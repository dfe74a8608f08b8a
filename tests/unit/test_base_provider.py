"""The base provider's entry points and its one converge path, on a toy provider and a
fake host (no lab): the order of the steps, the canonical inputs every hook sees, the
error when the host does not hold the result, and what the engine gets back; and `check`
with a provider's schema: canonical inputs, failures named by field, unknown values."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from pulumi.dynamic import ReadResult
from pulumi.runtime import rpc
from pydantic import model_validator

from providers import base, transport
from providers.base import Converged, HostProvider, Plans, check_with
from providers.plans import Plan
from providers.schema import host as host_schema
from providers.schema.fields import Between, ResourceArgs, at
from providers.transport import Endpoint, SshCredentials

pytestmark = [pytest.mark.unit]

HOST = {"name": "toy", "address": "192.0.2.1", "port": 22.0, "user": "root"}


class FakeHost:
    """The part of SshSession the base uses; `value` is the one fact the host holds."""

    def __init__(self) -> None:
        self.endpoint = Endpoint("toy", "192.0.2.1")
        self.value = 0
        self.obeys = True
        self.steps: list[str] = []

    def run(self, argv: tuple[str, ...], check: bool = True) -> None:
        self.steps.append(f"run {' '.join(argv)}")
        if self.obeys and argv[0] == "set":
            self.value = int(argv[1])


Count = Annotated[int, Between(0, 9)]


class ToyArgs(ResourceArgs):
    host: host_schema.Endpoint
    count: Count


class Toy(HostProvider[int]):
    """`count` on the host: plans `prepare` then `set <count>`, each made only after the
    one before it ran."""

    schema = ToyArgs

    def __init__(self, host: FakeHost) -> None:
        super().__init__()
        self.host = host

    def facts(self, session: Any, props: dict[str, Any]) -> int:
        self.host.steps.append(f"facts {props['count']!r}")
        return self.host.value

    def plan(self, props: dict[str, Any], found: int, olds: dict[str, Any] | None) -> Plans:
        self.host.steps.append("plan prepare")
        yield Plan.run(["prepare"]) if found != props["count"] else Plan.nothing("in place")
        self.host.steps.append("plan set")
        yield Plan.run(["set", str(props["count"])]) if found != props["count"] else Plan()

    def verify(self, props: dict[str, Any], found: int) -> str | None:
        self.host.steps.append("verify")
        return None if found == props["count"] else f"count reads {found}"

    def outputs(self, done: Converged[int]) -> dict[str, Any]:
        self.host.steps.append("outputs")
        return {**done.props, "before": done.before, "changed": done.changed, "olds": done.olds}

    def resource_id(self, outputs: dict[str, Any]) -> str:
        return f"{outputs['host']['name']}:count"

    def observe(self, session: Any, props: dict[str, Any]) -> dict[str, Any] | None:
        return {**props, "count": self.host.value} if self.host.value else None

    def remove(self, session: Any, props: dict[str, Any]) -> None:
        self.host.steps.append(f"remove {props['count']!r}")


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> FakeHost:
    fake = FakeHost()
    monkeypatch.setattr(transport, "session", lambda endpoint, credentials: fake)
    return fake


@pytest.fixture
def toy(host: FakeHost) -> Toy:
    provider = Toy(host)
    provider.use_credentials(SshCredentials("key", "known hosts"))
    return provider


def test_create_runs_facts_plan_apply_read_back_verify_outputs_in_order(
    toy: Toy, host: FakeHost
) -> None:
    logged = len(base.applied_log)
    created = toy.create({"host": HOST, "count": 3.0})  # the engine's float
    assert host.steps == [
        "facts 3",  # canonical: an int, as `check` made it
        "plan prepare",
        "run prepare",
        "plan set",  # made after the plan before it ran
        "run set 3",
        "facts 3",  # read back
        "verify",
        "outputs",
    ]
    assert base.applied_log[logged:] == [("toy", ("prepare",)), ("toy", ("set", "3"))]
    assert created.id == "toy:count"
    assert created.outs == {
        "host": {**HOST, "port": 22},
        "count": 3,
        "before": 0,
        "changed": True,
        "olds": None,
    }


def test_update_sees_canonical_olds_and_reports_nothing_changed(toy: Toy, host: FakeHost) -> None:
    host.value = 3
    olds = {"host": HOST, "count": 3.0, "before": 0}
    updated = toy.update("toy:count", olds, {"host": HOST, "count": 3.0})
    assert [step for step in host.steps if step.startswith("run")] == []
    assert updated.outs is not None
    assert updated.outs["changed"] is False
    assert updated.outs["olds"] == {"host": {**HOST, "port": 22}, "count": 3, "before": 0}


def test_a_host_that_does_not_take_the_change_fails_naming_it(toy: Toy, host: FakeHost) -> None:
    host.obeys = False
    with pytest.raises(RuntimeError, match=r"^toy: count reads 0$"):
        toy.create({"host": HOST, "count": 3})
    assert "outputs" not in host.steps


def test_read_reports_gone_as_an_empty_id(toy: Toy, host: FakeHost) -> None:
    gone = toy.read("toy:count", {"host": HOST, "count": 3.0})
    assert (gone.id, gone.outs) == ("", {})
    host.value = 5
    found = toy.read("toy:count", {"host": HOST, "count": 3.0})
    assert isinstance(found, ReadResult)
    assert (found.id, found.outs) == ("toy:count", {"host": {**HOST, "port": 22}, "count": 5})


def test_delete_removes_from_canonical_outputs(toy: Toy, host: FakeHost) -> None:
    toy.delete("toy:count", {"host": HOST, "count": 3.0})
    assert host.steps == ["remove 3"]


class LimitedArgs(ResourceArgs):
    """A rule between fields, and a default it may meet."""

    host: host_schema.Endpoint
    count: Count
    limit: Count = 1

    @model_validator(mode="after")
    def _within(self) -> LimitedArgs:
        if self.count > self.limit:
            raise at(("count", f"{self.count} is above the limit {self.limit}"))
        return self


def _failures(news: dict[str, Any]) -> dict[str, str]:
    return {f.property: f.reason for f in check_with(LimitedArgs, news)[1]}


def test_check_makes_inputs_canonical_and_keeps_the_outputs_beside_them() -> None:
    inputs, failures = check_with(LimitedArgs, {"host": HOST, "count": 1.0, "before": 0.0})
    assert failures == []
    assert inputs == {"host": {**HOST, "port": 22}, "count": 1, "limit": 1, "before": 0.0}
    assert isinstance(inputs["count"], int)
    assert check_with(LimitedArgs, {"host": HOST, "count": 1, "limit": None})[0]["limit"] == 1


def test_a_failure_names_the_field_and_says_where_inside_it() -> None:
    failures = _failures({"host": {"name": "toy", "address": "x", "port": 0}, "count": 10})
    assert set(failures) == {"host", "count"}
    assert failures["host"].startswith("host.address: 'x' is not an IP address; host.port: ")
    assert failures["count"].startswith("count: must be an integer from 0 to 9")
    assert _failures({"host": HOST, "count": 3}) == {"count": "count: 3 is above the limit 1"}
    assert _failures({"host": HOST}) == {"count": "count: is missing"}


def test_the_other_fields_stay_canonical_where_one_is_wrong() -> None:
    # As `canonical` needs it for stored outputs a refresh made invalid.
    inputs, failures = check_with(LimitedArgs, {"host": HOST, "count": 2.0, "limit": "x"})
    assert [f.property for f in failures] == ["limit"]
    assert inputs == {"host": {**HOST, "port": 22}, "count": 2, "limit": "x"}


def test_unknown_values_and_the_rules_they_take_part_in_wait_for_up() -> None:
    inputs, failures = check_with(LimitedArgs, {"host": HOST, "count": rpc.UNKNOWN})
    assert failures == []
    assert inputs == {"host": {**HOST, "port": 22}, "count": rpc.UNKNOWN, "limit": 1}
    # The limit's default would refuse 3: the rule waits for the limit.
    assert _failures({"host": HOST, "count": 3, "limit": rpc.UNKNOWN}) == {}
    # Anywhere inside a field.
    host = {**HOST, "address": rpc.UNKNOWN}
    assert check_with(LimitedArgs, {"host": host, "count": 1})[0]["host"] == host
    assert set(_failures({"host": host, "count": 10})) == {"count"}


def test_derived_fields_only_from_valid_inputs(host: FakeHost) -> None:
    class Counted(Toy):
        def derived(self, inputs: dict[str, Any]) -> dict[str, Any]:
            return {"twice": inputs["count"] * 2}

    assert Counted(host).check({}, {"host": HOST, "count": 2.0}).inputs["twice"] == 4
    assert "twice" not in Counted(host).check({}, {"host": HOST, "count": 20}).inputs
