"""RoutingTable: one `id name` line of a host's /etc/iproute2/rt_tables (`201 vm-out`).

Identity is (host, table_id); a new name is an update (the line is rewritten in place).
The id is called `table_id`, not `id`: Pulumi reserves `id` for the resource's own id.
A clash (the id named by someone else, or the name used by another id) fails the step.
"""

from __future__ import annotations

import threading
from typing import Any

import pulumi
from pulumi.dynamic import Resource

from providers import validate
from providers.base import Converged, HostProvider, Plans, apply, still_adopted
from providers.facts import routing_table as facts
from providers.plans import routing_table as plans
from providers.schema.routing_table import RoutingTableArgs
from providers.transport import SshSession

# The file is read, edited and written back: two tables on one host, created at once by
# the engine's concurrent calls, must not both write their version of the same old text.
_file_locks: dict[str, threading.Lock] = {}
_file_locks_guard = threading.Lock()


def file_lock(session: SshSession) -> threading.Lock:
    key = f"{session.endpoint.address}:{session.endpoint.port}"
    with _file_locks_guard:
        return _file_locks.setdefault(key, threading.Lock())


def _entries(session: SshSession) -> list[facts.Entry]:
    return facts.process(session.read_file(facts.PATH))


def _previous(olds: dict[str, Any] | None) -> str | None:
    """The name glidepath gave the table before (an update): that line is ours to rewrite."""
    return None if olds is None else olds.get("name")


def table_names(session: SshSession, table: int | str) -> dict[str, int]:
    """name -> id for PolicyRule and Route; the host's file is read only when a name
    that is not built in needs it."""
    if isinstance(table, int) or table in validate.BUILTIN_TABLES:
        return dict(validate.BUILTIN_TABLES)
    return facts.names(_entries(session))


class RoutingTableProvider(HostProvider[str | None]):
    identity = ("host", "table_id")
    schema = RoutingTableArgs

    def diffed_fields(self, news: dict[str, Any]) -> list[str]:
        return ["host", "table_id", "name"]

    def converge(
        self, session: SshSession, props: dict[str, Any], olds: dict[str, Any] | None
    ) -> dict[str, Any]:
        with file_lock(session):
            return super().converge(session, props, olds)

    def facts(self, session: SshSession, props: dict[str, Any]) -> str | None:
        return session.read_file(facts.PATH)

    def plan(self, props: dict[str, Any], found: str | None, olds: dict[str, Any] | None) -> Plans:
        yield plans.plan_set(int(props["table_id"]), props["name"], found, _previous(olds))

    def verify(self, props: dict[str, Any], found: str | None) -> str | None:
        table_id, name = int(props["table_id"]), props["name"]
        if any(e["id"] == table_id and e["name"] == name for e in facts.process(found)):
            return None
        return f"{facts.PATH} does not name table {table_id} {name!r} after writing it"

    def outputs(self, done: Converged[str | None]) -> dict[str, Any]:
        adopted = still_adopted(done.changed, _previous(done.olds), done.olds)
        return {**done.props, "adopted": adopted}

    def resource_id(self, outputs: dict[str, Any]) -> str:
        return f"{outputs['host']['name']}:rt_tables:{int(outputs['table_id'])}"

    def observe(self, session: SshSession, props: dict[str, Any]) -> dict[str, Any] | None:
        table_id = int(props["table_id"])
        named = [e["name"] for e in _entries(session) if e["id"] == table_id]
        if not named:
            return None  # the line is gone
        if props["name"] in named:
            return props
        return {**props, "name": named[-1]}  # renamed by hand: drift

    def remove(self, session: SshSession, props: dict[str, Any]) -> None:
        with file_lock(session):
            plan = plans.plan_remove(
                int(props["table_id"]),
                props["name"],
                session.read_file(facts.PATH),
                bool(props.get("adopted")),
            )
            apply(session, plan)


class RoutingTable(Resource, module="net", name="RoutingTable"):
    """A named routing table (an rt_tables entry) on a host."""

    def __init__(
        self,
        resource_name: str,
        host: pulumi.Input[dict[str, Any]],
        table_id: pulumi.Input[int],
        name: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            RoutingTableProvider(),
            resource_name,
            {"host": host, "table_id": table_id, "name": name, "adopted": None},
            opts,
        )
