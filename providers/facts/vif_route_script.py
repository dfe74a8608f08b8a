"""The vif-route script on a host: what is at its path and in its directory (`stat`), its
content (`cat`, through SshSession.read_file), and the vif -> address table inside it."""

from __future__ import annotations

import ipaddress
import re
from typing import TypedDict

from providers.transport import CommandResult


class Stat(TypedDict):
    """`755\\tregular file\\t/etc/libvirt/scripts/vif-route` ->
    {"mode": "755", "kind": "regular file"}"""

    mode: str
    kind: str


def stat_command(*paths: str) -> list[str]:
    # --printf interprets \t and \n itself; one line per path that exists.
    return ["stat", "--printf=%a\\t%F\\t%n\\n", "--", *paths]


def process_stat(result: CommandResult) -> dict[str, Stat]:
    """stat output -> {path: Stat} for the paths that exist; missing ones are left out.

    stat exits 1 when any path is missing but still prints the others; any other
    error (permission denied, ...) is raised.
    """
    found: dict[str, Stat] = {}
    for line in result.stdout.splitlines():
        mode, kind, path = line.split("\t", 2)
        found[path] = {"mode": mode, "kind": kind}
    if not result.ok:
        errors = [e for e in result.stderr.splitlines() if e.strip()]
        if not errors or not all("No such file or directory" in e for e in errors):
            raise RuntimeError(f"stat failed: {result.stderr.strip()}")
    return found


_ARM = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_.-]{0,14})\)(.*?);;", re.MULTILINE | re.DOTALL)
_IPV4 = re.compile(r"(?<![0-9.])(\d{1,3}(?:\.\d{1,3}){3})(?![0-9])")


def parse_routes(content: str) -> dict[str, str]:
    """The `case` table of a vif-route script -> {vif: VM address}.

    Reads both glidepath's arms (`vif0) ip=203.0.113.2 ;;`) and the blog's
    (`vif0) ip route add 203.0.113.2 dev "$1" ... ;;`): the first IPv4 address in each
    arm. Arms without one (the `*)` fallback, hand-made extras) are left out.
    """
    routes: dict[str, str] = {}
    for match in _ARM.finditer(content):
        vif, body = match.group(1), match.group(2)
        for candidate in _IPV4.findall(body):
            try:
                routes[vif] = str(ipaddress.IPv4Address(candidate))
            except ValueError:
                continue
            break
    return routes
