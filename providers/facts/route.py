"""The IPv4 routes of one table: `ip -4 -j route show table T`, parsed.

A table that never held a route does not exist in the kernel yet: iproute2 then exits 2
with "ipv4: FIB table does not exist" (and prints a lone "["). That is an empty table,
not an error.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any, TypedDict

from providers.transport import CommandResult

# Keys that say how the kernel got or shows a route, not where it sends packets.
_COSMETIC = {"dst", "gateway", "dev", "metric", "type", "protocol", "scope", "flags", "table"}


class Route(TypedDict):
    """`203.0.113.0/29 via 198.18.2.1 dev br0 metric 300` ->
    {"dst": "203.0.113.0/29", "type": "unicast", "via": "198.18.2.1", "dev": "br0",
     "metric": 300, "other": {}}

    `dst` is canonical like the checked input: "default", or a prefix with its length
    (iproute2 prints a /32 without it). `metric` is 0 when the kernel prints none.
    Attributes we do not set (`src`, multipath `nexthops`, ...) are kept in `other`.
    """

    dst: str
    type: str
    via: str | None
    dev: str | None
    metric: int
    other: dict[str, Any]


def command(table_id: int) -> list[str]:
    return ["ip", "-4", "-j", "route", "show", "table", str(table_id)]


def canonical_dst(value: str) -> str:
    if value in ("default", "0.0.0.0/0"):
        return "default"
    return str(ipaddress.ip_network(value, strict=False))


def process(result: CommandResult) -> list[Route]:
    if not result.ok:
        if "table does not exist" in result.stderr:
            return []
        raise RuntimeError(f"`ip route show` failed: {result.stderr.strip()}")
    routes: list[Route] = []
    for item in json.loads(result.stdout or "[]"):
        routes.append(
            {
                "dst": canonical_dst(str(item["dst"])),
                "type": str(item.get("type", "unicast")),
                "via": item.get("gateway"),
                "dev": item.get("dev"),
                "metric": int(item.get("metric", 0)),
                "other": {k: v for k, v in item.items() if k not in _COSMETIC},
            }
        )
    return routes
