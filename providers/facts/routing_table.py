"""The routing table names of a host: /etc/iproute2/rt_tables, parsed line by line.

The file is read with `SshSession.read_file` (None when it does not exist: iproute2 then
knows only its built-in names). Entries keep their line number so a planner can rewrite
one line and leave every other line, comment and blank exactly as it was.
"""

from __future__ import annotations

import re
from typing import TypedDict

from providers.validate import BUILTIN_TABLES

PATH = "/etc/iproute2/rt_tables"

# iproute2 (lib/rt_names.c) reads "<id> <name>" with the id in decimal or 0x-hex, then
# whitespace, then the name, optionally followed by whitespace and a '#' comment.
_ENTRY = re.compile(r"^\s*(0[xX][0-9a-fA-F]+|[0-9]+)\s+(\S+)\s*(#.*)?$")


class Entry(TypedDict):
    """`201\\tvm-out` on the 7th line -> {"id": 201, "name": "vm-out", "line": 6}."""

    id: int
    name: str
    line: int


def process(text: str | None) -> list[Entry]:
    """Every entry line of the file, in order; comments, blanks and junk are skipped."""
    entries: list[Entry] = []
    for number, line in enumerate((text or "").splitlines()):
        if line.lstrip().startswith("#"):
            continue
        match = _ENTRY.match(line)
        if match is None:
            continue
        entries.append({"id": int(match.group(1), 0), "name": match.group(2), "line": number})
    return entries


def names(entries: list[Entry]) -> dict[str, int]:
    """name -> id as `ip` resolves it: the built-ins, then the file (a later line wins,
    as in iproute2, which fills its table in file order)."""
    result = dict(BUILTIN_TABLES)
    by_id: dict[int, str] = {}
    for entry in entries:
        by_id[entry["id"]] = entry["name"]
    for table_id, name in by_id.items():
        result[name] = table_id
    return result
