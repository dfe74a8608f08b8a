"""PolicyRule: `ip rule add priority P fwmark M table T` on one host (IPv4).

Identity is (host, priority); a new fwmark or table is an update (make-before-break).
The table may be given by id or by rt_tables name; the resolved id is stored as
`table_id`, so read and delete never depend on the name still being there (a
RoutingTable may be deleted first).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import pulumi
from pulumi.dynamic import Resource

from providers.base import Converged, HostProvider, Plans, apply, still_adopted
from providers.boot import host as boot
from providers.boot import persist
from providers.facts import policy_rule as facts
from providers.plans import policy_rule as plans
from providers.plans.routing_table import resolve
from providers.routing_table import table_names
from providers.schema.policy_rule import PolicyRuleArgs
from providers.transport import SshSession


def _rules(session: SshSession, priority: int) -> list[facts.Rule]:
    return facts.process(session.run(facts.command(priority)).stdout)


class _Found(NamedTuple):
    tables: dict[str, int]  # rt_tables names, read only when the table is given by name
    rules: list[facts.Rule]  # the rules at our priority


def _record(priority: int) -> str:
    return persist.record_name("rule", priority)


def _previous(olds: dict[str, Any] | None) -> dict[str, int] | None:
    """The {fwmark, table_id} glidepath set at this priority before (an update): that rule
    is ours to replace."""
    if olds is None or olds.get("fwmark") is None or olds.get("table_id") is None:
        return None
    return {"fwmark": int(olds["fwmark"]), "table_id": int(olds["table_id"])}


class PolicyRuleProvider(HostProvider[_Found]):
    identity = ("host", "priority")
    schema = PolicyRuleArgs

    def diffed_fields(self, news: dict[str, Any]) -> list[str]:
        return ["host", "priority", "fwmark", "table"]

    def facts(self, session: SshSession, props: dict[str, Any]) -> _Found:
        tables = table_names(session, props["table"])
        return _Found(tables, _rules(session, int(props["priority"])))

    def plan(self, props: dict[str, Any], found: _Found, olds: dict[str, Any] | None) -> Plans:
        priority, fwmark = int(props["priority"]), int(props["fwmark"])
        yield plans.plan_add(
            priority, fwmark, props["table"], found.tables, found.rules, _previous(olds)
        )

    def read_back(self, session: SshSession, props: dict[str, Any], before: _Found) -> _Found:
        return before._replace(rules=_rules(session, int(props["priority"])))

    def verify(self, props: dict[str, Any], found: _Found) -> str | None:
        priority, fwmark = int(props["priority"]), int(props["fwmark"])
        table_id = resolve(props["table"], found.tables)
        if any(plans.matches(r, priority, fwmark, table_id) for r in found.rules):
            return None
        wanted = f"rule {priority} fwmark {hex(fwmark)} lookup {table_id}"
        return f"{wanted} is not there after adding it"

    def keep(self, session: SshSession, done: Converged[_Found]) -> None:
        priority = int(done.props["priority"])
        fields = {
            "priority": priority,
            "fwmark": int(done.props["fwmark"]),
            "table_id": resolve(done.props["table"], done.after.tables),
        }
        boot.keep(session, "rule", _record(priority), fields)

    def outputs(self, done: Converged[_Found]) -> dict[str, Any]:
        return {
            **done.props,
            "priority": int(done.props["priority"]),
            "fwmark": int(done.props["fwmark"]),
            "table_id": resolve(done.props["table"], done.after.tables),
            "adopted": still_adopted(done.changed, _previous(done.olds), done.olds),
        }

    def resource_id(self, outputs: dict[str, Any]) -> str:
        return f"{outputs['host']['name']}:rule:{outputs['priority']}"

    def observe(self, session: SshSession, props: dict[str, Any]) -> dict[str, Any] | None:
        priority, table_id = int(props["priority"]), int(props["table_id"])
        here = _rules(session, priority)
        if any(plans.matches(r, priority, int(props["fwmark"]), table_id) for r in here):
            return props
        found = next((r for r in here if r["table"] is not None), None)
        if found is None:
            return None  # deleted by hand (or never there)
        # Changed by hand: report what the host has, so refresh shows it as drift.
        table = props["table"] if found["table"] == table_id else found["table"]
        return {**props, "fwmark": found["fwmark"], "table": table, "table_id": found["table"]}

    def remove(self, session: SshSession, props: dict[str, Any]) -> None:
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
        boot.forget(session, _record(priority))


class PolicyRule(Resource, module="net", name="PolicyRule"):
    """`ip rule add priority P fwmark M table T` on a host."""

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
