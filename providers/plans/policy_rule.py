"""PolicyRule plans: the blog's `ip rule add fwmark 1 table vm-out`, at a fixed priority.

A rule is ours when it sits at our priority and says exactly `fwmark M lookup T` (full
mask, no other selector, no other action). Changes are make-before-break: the new rule is
added (the kernel puts it after the old one at the same priority), then the old one is
deleted with all its selectors, so `ip rule del` can never take someone else's rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from providers.plans import Argv, Plan, PlanError
from providers.plans.routing_table import resolve


def selectors(priority: int, fwmark: int, table_id: int) -> list[str]:
    # One argv element per value: hex like iproute2 prints it, the table always by id so
    # that the rule does not depend on rt_tables being read the same way later.
    return ["priority", str(priority), "fwmark", hex(fwmark), "table", str(table_id)]


def matches(rule: Mapping[str, Any], priority: int, fwmark: int, table_id: int) -> bool:
    return (
        rule.get("priority") == priority
        and rule.get("fwmark") == fwmark
        and rule.get("fwmask") is None
        and rule.get("table") == table_id
        and not rule.get("other")
    )


def describe(rule: Mapping[str, Any]) -> str:
    parts = [f"{rule.get('priority')}:"]
    if rule.get("fwmark") is not None:
        mask = rule.get("fwmask")
        parts.append(f"fwmark {hex(rule['fwmark'])}" + (f"/{hex(mask)}" if mask else ""))
    parts += [f"{k} {v}" for k, v in sorted((rule.get("other") or {}).items())]
    if rule.get("table") is not None:
        parts.append(f"lookup {rule['table']}")
    return " ".join(parts)


def plan_add(
    priority: int,
    fwmark: int,
    table: int | str,
    tables: Mapping[str, int],
    rules: Sequence[Mapping[str, Any]],
    previous: Mapping[str, int] | None = None,
) -> Plan:
    """`previous` = {"fwmark", "table_id"} that glidepath set at this priority before (an
    update, or what refresh read); that rule is ours to replace."""
    table_id = resolve(table, tables)
    here = [r for r in rules if r.get("priority") == priority]
    old: list[Mapping[str, Any]] = []
    present = False
    for rule in here:
        if matches(rule, priority, fwmark, table_id):
            present = True
        elif previous and matches(rule, priority, previous["fwmark"], previous["table_id"]):
            old.append(rule)
        else:
            raise PlanError(
                f"priority {priority} already holds the rule `{describe(rule)}`, not "
                "glidepath's; choose another priority or remove that rule"
            )
    commands: list[Argv] = []
    if not present:
        commands.append(("ip", "-4", "rule", "add", *selectors(priority, fwmark, table_id)))
    for rule in old:
        commands.append(
            ("ip", "-4", "rule", "del", *selectors(priority, rule["fwmark"], rule["table"]))
        )
    if not commands:
        return Plan.nothing(f"rule {priority}: fwmark {hex(fwmark)} lookup {table_id} is in place")
    return Plan.run(*commands, reason=f"rule {priority}: fwmark {hex(fwmark)} lookup {table_id}")


def plan_delete(
    priority: int,
    fwmark: int,
    table_id: int,
    rules: Sequence[Mapping[str, Any]],
    adopted: bool = False,
) -> Plan:
    """Delete our rule, from stored outputs alone; anything else at the priority stays.
    `adopted`: the same artifact was there before glidepath and glidepath never changed it
    (stored at create), so destroying the stack leaves it, as it was before."""
    if adopted:
        return Plan.nothing(f"rule {priority} was there before glidepath; left as is")
    here = [r for r in rules if r.get("priority") == priority]
    if any(matches(r, priority, fwmark, table_id) for r in here):
        return Plan.run(
            ("ip", "-4", "rule", "del", *selectors(priority, fwmark, table_id)),
            reason=f"remove rule {priority}",
        )
    if here:
        return Plan.nothing(
            f"priority {priority} holds `{describe(here[0])}`, not ours; left as is"
        )
    return Plan.nothing(f"rule {priority} is already absent")
