"""PolicyRule: `ip rule add priority P fwmark M table T` on one host (IPv4).

Identity is (host, priority); a new fwmark or table is an update (make-before-break).
The table may be given by id or by rt_tables name; the resolved id is stored as
`table_id`, so read and delete never depend on the name still being there (a
RoutingTable may be deleted first).
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, ReadResult, Resource, UpdateResult

from providers import validate
from providers.base import HostProvider, apply, still_adopted
from providers.facts import policy_rule as facts
from providers.plans import policy_rule as plans
from providers.plans.routing_table import resolve
from providers.routing_table import table_names
from providers.transport import SshSession


def _rules(session: SshSession, priority: int) -> list[facts.Rule]:
    return facts.process(session.run(facts.command(priority)).stdout)


class PolicyRuleProvider(HostProvider):
    identity = ("host", "priority")

    def check_inputs(self, checker: validate.Checker) -> None:
        # 0 is the `local` lookup and 32766/32767 the main/default ones: never ours.
        checker.field("priority", lambda v: validate.integer(v, 1, 32765))
        checker.field("fwmark", lambda v: validate.integer(v, 1, 0xFFFFFFFF))
        checker.field("table", validate.table)

    def diffed_fields(self, news: dict[str, Any]) -> list[str]:
        return ["host", "priority", "fwmark", "table"]

    def _set(self, props: dict[str, Any], previous: dict[str, int] | None) -> dict[str, Any]:
        session = self.session(props)
        priority, fwmark, table = int(props["priority"]), int(props["fwmark"]), props["table"]
        tables = table_names(session, table)
        plan = plans.plan_add(priority, fwmark, table, tables, _rules(session, priority), previous)
        apply(session, plan)
        table_id = resolve(table, tables)
        if not any(plans.matches(r, priority, fwmark, table_id) for r in _rules(session, priority)):
            raise RuntimeError(
                f"{session.endpoint.name}: rule {priority} fwmark {hex(fwmark)} lookup "
                f"{table_id} is not there after adding it"
            )
        adopted = still_adopted(plan, previous, props)
        return {
            **props,
            "priority": priority,
            "fwmark": fwmark,
            "table_id": table_id,
            "adopted": adopted,
        }

    def create(self, props: dict[str, Any]) -> CreateResult:
        outs = self._set(props, None)
        return CreateResult(f"{props['host']['name']}:rule:{outs['priority']}", outs)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        previous = None
        if olds.get("fwmark") is not None and olds.get("table_id") is not None:
            previous = {"fwmark": int(olds["fwmark"]), "table_id": int(olds["table_id"])}
        return UpdateResult(self._set({**news, "adopted": olds.get("adopted")}, previous))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        session = self.session(props)
        priority, table_id = int(props["priority"]), int(props["table_id"])
        here = _rules(session, priority)
        if any(plans.matches(r, priority, int(props["fwmark"]), table_id) for r in here):
            return ReadResult(id_, props)
        found = next((r for r in here if r["table"] is not None), None)
        if found is None:
            return ReadResult("", {})  # deleted by hand (or never there)
        # Changed by hand: report what the host has, so refresh shows it as drift.
        table = props["table"] if found["table"] == table_id else found["table"]
        return ReadResult(
            id_, {**props, "fwmark": found["fwmark"], "table": table, "table_id": found["table"]}
        )

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        session = self.session(props)
        priority = int(props["priority"])
        apply(
            session,
            plans.plan_delete(
                priority,
                int(props["fwmark"]),
                int(props["table_id"]),
                _rules(session, priority),
                bool(props.get("adopted")),
            ),
        )


class PolicyRule(Resource, module="net", name="PolicyRule"):
    """`ip rule add priority P fwmark M table T` on a host."""

    priority: pulumi.Output[int]
    fwmark: pulumi.Output[int]
    table: pulumi.Output[Any]
    table_id: pulumi.Output[int]
    adopted: pulumi.Output[bool]

    def __init__(
        self,
        resource_name: str,
        host: pulumi.Input[dict[str, Any]],
        priority: pulumi.Input[int],
        fwmark: pulumi.Input[int],
        table: pulumi.Input[int | str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            PolicyRuleProvider(),
            resource_name,
            {
                "host": host,
                "priority": priority,
                "fwmark": fwmark,
                "table": table,
                "table_id": None,
                "adopted": None,
            },
            opts,
        )
