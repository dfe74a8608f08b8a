"""The vif-route script on a host: what is at its path, beside it and in its directory
(`stat`), its content (`cat`, through SshSession.read_file), every owner's file in
`<path>.d/` (one command), and the vif -> address table of a script with its routes
inside (the blog's, or glidepath's before the owners' files)."""

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


# Each regular file of the directory (the names the script's glob sees: no dot files) as
# its name and its content, each ended by a NUL, which neither can contain. No directory
# yet: no files.
FRAGMENTS_SCRIPT = """\
set -eu
[ -d "$1" ] || exit 0
cd -- "$1"
for name in *; do
    if [ -f "$name" ]; then
        printf '%s\\000' "$name"
        cat -- "$name"
        printf '\\000'
    fi
done
"""


def fragments_command(directory: str) -> list[str]:
    return ["sh", "-c", FRAGMENTS_SCRIPT, "glidepath-vif-route-fragments", directory]


def process_fragments(result: CommandResult) -> dict[str, str]:
    """The fragments script's output -> {owner (file name): content}.

    `name\\0content\\0` per file:
    "glidepath.lab\\0vif0 203.0.113.2\\n\\0" -> {"glidepath.lab": "vif0 203.0.113.2\\n"}
    """
    if not result.ok:
        raise RuntimeError(f"reading the vif-route owners' files failed: {result.stderr.strip()}")
    fields = result.stdout.split("\0")
    if fields[-1] != "" or len(fields) % 2 != 1:
        raise RuntimeError("the vif-route owners' files hold a NUL byte; glidepath reads text")
    return dict(zip(fields[0:-1:2], fields[1:-1:2], strict=True))


_VIF = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,14}$")


def parse_fragment(content: str) -> dict[str, str]:
    """An owner's file -> {vif: address}, as the script reads it: the first two words of
    each line, the first line for a vif winning. Lines whose words are not a vif name and
    an IPv4 address are left out.

    "vif4 203.0.113.6\nvif5 203.0.113.7\n" -> {"vif4": "203.0.113.6", "vif5": "203.0.113.7"}
    """
    routes: dict[str, str] = {}
    for line in content.splitlines():
        words = line.split()
        if len(words) < 2 or not _VIF.fullmatch(words[0]) or words[0] in routes:
            continue
        try:
            routes[words[0]] = str(ipaddress.IPv4Address(words[1]))
        except ValueError:
            continue
    return routes


_ARM = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_.-]{0,14})\)(.*?);;", re.MULTILINE | re.DOTALL)
_IPV4 = re.compile(r"(?<![0-9.])(\d{1,3}(?:\.\d{1,3}){3})(?![0-9])")


def parse_routes(content: str) -> dict[str, str]:
    """The `case` table of a script with its routes inside -> {vif: VM address}.

    Reads both the blog's arms (`vif0) ip route add 203.0.113.2 dev "$1" ... ;;`) and
    those glidepath generated before the owners' files (`vif0) ip=203.0.113.2 ;;`): the
    first IPv4 address in each arm. Arms without one (the `*)` fallback, hand-made
    extras) are left out.
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
