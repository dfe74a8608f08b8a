"""RoutingTable: one `id name` line of a host's /etc/iproute2/rt_tables (`201 vm-out`).

Identity is (host, table_id); a new name is an update (the line is rewritten in place).
The id is called `table_id`, not `id`: Pulumi reserves `id` for the resource's own id.
A clash (the id named by someone else, or the name used by another id) fails the step.
"""

from __future__ import annotations

import threading
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, ReadResult, Resource, UpdateResult

from providers import validate
from providers.base import HostProvider, apply
from providers.facts import rt_tables as facts
from providers.plans import routing_table as plans
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


def table_names(session: SshSession, table: int | str) -> dict[str, int]:
    """name -> id for PolicyRule and Route; the host's file is read only when a name
    that is not built in needs it."""
    if isinstance(table, int) or table in validate.BUILTIN_TABLES:
        return dict(validate.BUILTIN_TABLES)
    return facts.names(_entries(session))


class RoutingTableProvider(HostProvider):
    identity = ("host", "table_id")

    def check_inputs(self, checker: validate.Checker) -> None:
        checker.field("table_id", validate.table_id)
        checker.field("name", validate.table_name)

    def diffed_fields(self, news: dict[str, Any]) -> list[str]:
        return ["host", "table_id", "name"]

    def _set(self, props: dict[str, Any], previous: str | None) -> bool:
        """Apply; True when something had to change."""
        session = self.session(props)
        table_id, name = int(props["table_id"]), props["name"]
        with file_lock(session):
            plan = plans.plan_set(table_id, name, session.read_file(facts.PATH), previous)
            apply(session, plan)
            entries = _entries(session)
        changed = bool(plan)
        if not any(e["id"] == table_id and e["name"] == name for e in entries):
            raise RuntimeError(
                f"{session.endpoint.name}: {facts.PATH} does not name table {table_id} "
                f"{name!r} after writing it"
            )
        return changed

    def create(self, props: dict[str, Any]) -> CreateResult:
        adopted = not self._set(props, None)
        return CreateResult(
            f"{props['host']['name']}:rt_tables:{int(props['table_id'])}",
            {**props, "adopted": adopted},
        )

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        changed = self._set(news, olds.get("name"))
        return UpdateResult({**news, "adopted": bool(olds.get("adopted")) and not changed})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        session = self.session(props)
        table_id = int(props["table_id"])
        named = [e["name"] for e in _entries(session) if e["id"] == table_id]
        if not named:
            return ReadResult("", {})  # the line is gone
        if props["name"] in named:
            return ReadResult(id_, props)
        return ReadResult(id_, {**props, "name": named[-1]})  # renamed by hand: drift

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        session = self.session(props)
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

    table_id: pulumi.Output[int]
    name: pulumi.Output[str]
    adopted: pulumi.Output[bool]

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
