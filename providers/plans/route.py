"""Route plans: `ip route replace <dst> [via X] [dev D] table T metric M` (IPv4).

The kernel keys an IPv4 route by (table, dst, tos, metric): a new metric is a second
route, not a change. So an update that moves the metric adds the new route first and
then deletes the old one by its stored fields (make-before-break), and a route we did not
make that sits in our (dst, table, metric) slot is a clash, never overwritten.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from providers.plans import Argv, Plan, PlanError
from providers.plans.routing_table import resolve


def spec(dst: str, via: str | None, dev: str | None, table_id: int, metric: int) -> list[str]:
    argv = [dst]
    if via is not None:
        argv += ["via", via]
    if dev is not None:
        argv += ["dev", dev]
    return [*argv, "table", str(table_id), "metric", str(metric)]


def matches(route: Mapping[str, Any], via: str | None, dev: str | None, metric: int) -> bool:
    """Is this fact our route? Without a dev, the kernel picks one from `via`: any will do."""
    return (
        route.get("type", "unicast") == "unicast"
        and route.get("metric", 0) == metric
        and route.get("via") == via
        and (dev is None or route.get("dev") == dev)
        and not route.get("other")
    )


def describe(route: Mapping[str, Any]) -> str:
    parts = [str(route.get("type", "unicast")), str(route.get("dst"))]
    for key in ("via", "dev"):
        if route.get(key) is not None:
            parts += [key, str(route[key])]
    parts += ["metric", str(route.get("metric", 0))]
    parts += [f"{k} {v}" for k, v in sorted((route.get("other") or {}).items())]
    return " ".join(parts)


def plan_set(
    dst: str,
    via: str | None,
    dev: str | None,
    table: int | str,
    metric: int,
    tables: Mapping[str, int],
    routes: Sequence[Mapping[str, Any]],
    previous: Mapping[str, Any] | None = None,
) -> Plan:
    """`routes` = the facts of the table; `previous` = the {via, dev, metric} glidepath
    set for this dst and table before (an update, or what refresh read)."""
    table_id = resolve(table, tables)
    here = [r for r in routes if r.get("dst") == dst]
    slot = [r for r in here if r.get("metric", 0) == metric]
    ours_slot = previous is not None and previous.get("metric") == metric
    commands: list[Argv] = []
    if not any(matches(r, via, dev, metric) for r in slot):
        if slot and not ours_slot:
            raise PlanError(
                f"table {table_id} already has `{describe(slot[0])}`, not glidepath's; "
                "remove it or choose another metric"
            )
        commands.append(("ip", "-4", "route", "replace", *spec(dst, via, dev, table_id, metric)))
    if previous is not None and previous.get("metric") != metric:
        old_metric = int(previous["metric"])
        old_via, old_dev = previous.get("via"), previous.get("dev")
        if any(matches(r, old_via, old_dev, old_metric) for r in here):
            commands.append(
                ("ip", "-4", "route", "del", *spec(dst, old_via, old_dev, table_id, old_metric))
            )
    if not commands:
        return Plan.nothing(f"route {dst} table {table_id} metric {metric} is in place")
    return Plan.run(*commands, reason=f"route {dst} table {table_id} metric {metric}")


def plan_delete(
    dst: str,
    via: str | None,
    dev: str | None,
    table_id: int,
    metric: int,
    routes: Sequence[Mapping[str, Any]],
    adopted: bool = False,
) -> Plan:
    """Delete the route matching our stored fields, and nothing else.
    `adopted`: the same artifact was there before glidepath and glidepath never changed it
    (stored at create), so destroying the stack leaves it, as it was before."""
    if adopted:
        return Plan.nothing(f"route {dst} table {table_id} was there before glidepath; left as is")
    here = [r for r in routes if r.get("dst") == dst and r.get("metric", 0) == metric]
    if any(matches(r, via, dev, metric) for r in here):
        return Plan.run(
            ("ip", "-4", "route", "del", *spec(dst, via, dev, table_id, metric)),
            reason=f"remove route {dst} table {table_id} metric {metric}",
        )
    if here:
        return Plan.nothing(
            f"table {table_id} has `{describe(here[0])}`, changed since glidepath set it; "
            "left as is"
        )
    return Plan.nothing(f"route {dst} table {table_id} metric {metric} is already absent")
