"""The IPv4 policy rules of a host: `ip -4 -j -N rule show [priority P]`, parsed.

`-N` makes iproute2 print tables by id ("201") rather than by the rt_tables name it
would otherwise show ("vm-out"), so a rule compares with plain equality whatever names
the host has. Names are still understood (given the host's names), for output captured
without `-N`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypedDict

from providers.validate import BUILTIN_TABLES

FULL_MASK = 0xFFFFFFFF


class Rule(TypedDict):
    """`31039: from all fwmark 0x7 lookup 237` ->
    {"priority": 31039, "fwmark": 7, "fwmask": None, "table": 237, "other": {}}

    `fwmask` is None for the full mask (iproute2 prints no mask then). Selectors and
    actions we do not model (`from 203.0.113.0/29`, `iif`, `unreachable`, ...) are kept in
    `other`, so such a rule never compares equal to a plain fwmark rule.
    """

    priority: int
    fwmark: int | None
    fwmask: int | None
    table: int | str | None
    other: dict[str, Any]


def command(priority: int | None = None) -> list[str]:
    argv = ["ip", "-4", "-j", "-N", "rule", "show"]
    return [*argv, "priority", str(priority)] if priority is not None else argv


def _table(value: Any, tables: Mapping[str, int]) -> int | str:
    text = str(value)
    if text.isdigit():
        return int(text)
    return tables.get(text, BUILTIN_TABLES.get(text, text))  # unknown name: kept as text


def process(output: str, tables: Mapping[str, int] | None = None) -> list[Rule]:
    """`ip -j rule show` output -> rules in kernel order. `tables` (name -> id, see
    facts.routing_table.names) resolves tables printed by name."""
    rules: list[Rule] = []
    for raw in json.loads(output or "[]"):
        item = dict(raw)
        fwmark = item.pop("fwmark", None)
        fwmask = item.pop("fwmask", None)
        table = item.pop("table", None)
        if item.get("src") == "all":
            del item["src"]
        elif "src" in item:  # a source selector: keep it as one prefix
            item["src"] = f"{item['src']}/{item.pop('srclen', 32)}"
        mask = int(str(fwmask), 0) if fwmask is not None else None
        rules.append(
            {
                "priority": int(item.pop("priority", 0)),
                "fwmark": int(str(fwmark), 0) if fwmark is not None else None,
                "fwmask": None if mask == FULL_MASK else mask,
                "table": _table(table, tables or {}) if table is not None else None,
                "other": item,
            }
        )
    return rules
