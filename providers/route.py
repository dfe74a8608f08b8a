"""Route: `ip route replace <dst> [via X] [dev D] table T metric M` on one host (IPv4).

Identity is (host, dst, table); via, dev and metric are updates. The table may be given
by id or rt_tables name (default `main`); the resolved id is stored as `table_id` so
read and delete work from stored outputs even once the name is gone.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import pulumi
from pulumi.dynamic import Resource

from providers.base import Converged, HostProvider, Plans, apply, still_adopted
from providers.boot import host as boot
from providers.boot import persist
from providers.facts import route as facts
from providers.plans import route as plans
from providers.plans.routing_table import resolve
from providers.routing_table import table_names
from providers.schema.route import RouteArgs
from providers.transport import SshSession


def _routes(session: SshSession, table_id: int) -> list[facts.Route]:
    return facts.process(session.run(facts.command(table_id), check=False))


def _fields(props: dict[str, Any]) -> dict[str, Any]:
    return {"via": props.get("via"), "dev": props.get("dev"), "metric": int(props["metric"])}


def _previous(olds: dict[str, Any] | None) -> dict[str, Any] | None:
    """The {via, dev, metric} glidepath set for this dst and table before (an update)."""
    return _fields(olds) if olds is not None and olds.get("metric") is not None else None


def _record(dst: str, table_id: int, metric: int) -> str:
    return persist.record_name("route", table_id, dst, metric)


class _Found(NamedTuple):
    tables: dict[str, int]  # rt_tables names, read only when the table is given by name
    table_id: int
    routes: list[facts.Route]  # the table's routes


class RouteProvider(HostProvider[_Found]):
    identity = ("host", "dst", "table")
    schema = RouteArgs

    def diffed_fields(self, news: dict[str, Any]) -> list[str]:
        return ["host", "dst", "via", "dev", "table", "metric"]

    def facts(self, session: SshSession, props: dict[str, Any]) -> _Found:
        tables = table_names(session, props["table"])
        table_id = resolve(props["table"], tables)
        return _Found(tables, table_id, _routes(session, table_id))

    def plan(self, props: dict[str, Any], found: _Found, olds: dict[str, Any] | None) -> Plans:
        ours = _fields(props)
        yield plans.plan_set(
            props["dst"],
            ours["via"],
            ours["dev"],
            props["table"],
            ours["metric"],
            found.tables,
            found.routes,
            _previous(olds),
        )

    def read_back(self, session: SshSession, props: dict[str, Any], before: _Found) -> _Found:
        return before._replace(routes=_routes(session, before.table_id))

    def verify(self, props: dict[str, Any], found: _Found) -> str | None:
        dst, ours = props["dst"], _fields(props)
        via, dev, metric = ours["via"], ours["dev"], ours["metric"]
        if any(r["dst"] == dst and plans.matches(r, via, dev, metric) for r in found.routes):
            return None
        wanted = " ".join(plans.spec(dst, via, dev, found.table_id, metric))
        return f"route {wanted} is not there after adding it"

    def keep(self, session: SshSession, done: Converged[_Found]) -> None:
        dst, table_id, fields = done.props["dst"], done.after.table_id, _fields(done.props)
        boot.keep(
            session, "route", _record(dst, table_id, fields["metric"]), {
                "dst": dst, "table_id": table_id, **fields,
            },
        )  # fmt: skip
        previous = _previous(done.olds)
        if previous is not None and previous["metric"] != fields["metric"]:
            boot.forget(session, _record(dst, table_id, int(previous["metric"])))

    def outputs(self, done: Converged[_Found]) -> dict[str, Any]:
        return {
            **done.props,
            "adopted": still_adopted(done.changed, _previous(done.olds), done.olds),
            **_fields(done.props),  # via and dev stored even where not given
            "table_id": done.after.table_id,
        }

    def resource_id(self, outputs: dict[str, Any]) -> str:
        return f"{outputs['host']['name']}:route:{outputs['table_id']}:{outputs['dst']}"

    def observe(self, session: SshSession, props: dict[str, Any]) -> dict[str, Any] | None:
        dst, table_id, ours = props["dst"], int(props["table_id"]), _fields(props)
        slot = [
            r
            for r in _routes(session, table_id)
            if r["dst"] == dst and r["metric"] == ours["metric"]
        ]
        if any(plans.matches(r, ours["via"], ours["dev"], ours["metric"]) for r in slot):
            return props
        if not slot:
            return None  # deleted by hand (another metric is another route)
        # Replaced by hand at our key: report what the host has, so refresh shows drift.
        found = slot[0]
        dev = found["dev"] if ours["dev"] is not None or found["via"] is None else None
        return {**props, "via": found["via"], "dev": dev}

    def remove(self, session: SshSession, props: dict[str, Any]) -> None:
        table_id, fields = int(props["table_id"]), _fields(props)
        plan = plans.plan_delete(
            props["dst"],
            fields["via"],
            fields["dev"],
            table_id,
            fields["metric"],
            _routes(session, table_id),
            bool(props.get("adopted")),
        )
        apply(session, plan)
        boot.forget(session, _record(props["dst"], table_id, fields["metric"]))


class Route(Resource, module="net", name="Route"):
    """An IPv4 route in a table of a host (inputs: providers/schema/route.py, whose
    defaults fill what is left None)."""

    def __init__(
        self,
        resource_name: str,
        host: pulumi.Input[dict[str, Any]],
        dst: pulumi.Input[str],
        via: pulumi.Input[str] | None = None,
        dev: pulumi.Input[str] | None = None,
        table: pulumi.Input[int | str] | None = None,
        metric: pulumi.Input[int] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            RouteProvider(),
            resource_name,
            {
                "host": host,
                "dst": dst,
                "via": via,
                "dev": dev,
                "table": table,
                "metric": metric,
                "table_id": None,
                "adopted": None,
            },
            opts,
        )
