"""Shared helpers for the RoutingTable, PolicyRule and Route lab tests on host `new`.

The tests use table ids, names, priorities and a prefix of their own, so they never
touch the lab baseline's `201 vm-out`, its fwmark rule, or its routes; `scrub` removes
whatever a failed test left behind, and only that.
"""

from __future__ import annotations

import json
from typing import Any

from providers.facts import routing_table as rt_tables
from providers.transport import SshCredentials

HOST = "new"
TABLES = (231, 232, 233)
NAMES = ("gp-test-a", "gp-test-b", "gp-hand")
PRIORITIES = (31001, 31002, 31003)
PREFIX = "198.51.100.240/29"
GATEWAY = "198.18.2.1"  # new's uplink gateway (core), on br0


def rt_tables_text(lab: Any) -> str:
    return str(lab.run(HOST, ["cat", rt_tables.PATH]).stdout)


def write_rt_tables(lab: Any, text: str) -> None:
    lab.run(HOST, ["tee", rt_tables.PATH], input=text)


def rules_at(lab: Any, priority: int) -> list[dict[str, Any]]:
    out = lab.run(HOST, ["ip", "-4", "-j", "-N", "rule", "show", "priority", str(priority)])
    return list(json.loads(out.stdout or "[]"))


def routes_in(lab: Any, table: int) -> list[dict[str, Any]]:
    out = lab.run(HOST, ["ip", "-4", "-j", "route", "show", "table", str(table)], check=False)
    return list(json.loads(out.stdout)) if out.returncode == 0 else []


def scrub(lab: Any) -> None:
    text = rt_tables_text(lab)
    kept = [
        line
        for line in text.splitlines(keepends=True)
        if not any(e["id"] in TABLES or e["name"] in NAMES for e in rt_tables.process(line))
    ]
    if "".join(kept) != text:
        write_rt_tables(lab, "".join(kept))
    for priority in PRIORITIES:
        for _ in range(10):
            if not rules_at(lab, priority):
                break
            lab.run(HOST, ["ip", "-4", "rule", "del", "priority", str(priority)])
    for table in TABLES:
        lab.run(HOST, ["ip", "-4", "route", "flush", "table", str(table)], check=False)


def provider_for(cls: type, credentials: SshCredentials) -> Any:
    provider = cls()
    provider.use_credentials(credentials)
    return provider


def outs_of(result: Any) -> dict[str, Any]:
    assert result.outs is not None
    return dict(result.outs)


def checked(provider: Any, **news: Any) -> dict[str, Any]:
    result = provider.check({}, news)
    assert not result.failures, result.failures
    return dict(result.inputs)
