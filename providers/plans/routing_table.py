"""RoutingTable plans: the `201\\tvm-out` line of /etc/iproute2/rt_tables.

The file is rewritten whole (atomically, by `FileWrite`), with every line that is not
ours kept byte for byte. A name is a promise that other tools (ip rule, ip route, the
operator) rely on, so we never rename a table someone else named: that is a clash.
Also home of `resolve`, which PolicyRule and Route use to turn a table name into its id.
"""

from __future__ import annotations

from collections.abc import Mapping

from providers.facts import routing_table as facts
from providers.plans import FileWrite, Plan, PlanError


def line(table_id: int, name: str) -> str:
    return f"{table_id}\t{name}\n"


def resolve(table: int | str, tables: Mapping[str, int]) -> int:
    """A table input (id or name) -> its id, through the host's rt_tables names."""
    if isinstance(table, int):
        return table
    if table in tables:
        return tables[table]
    raise PlanError(
        f"table {table!r} is not named in {facts.PATH} on this host: declare a RoutingTable "
        "for it (and depend on it), or give the table id"
    )


def plan_set(table_id: int, name: str, content: str | None, previous: str | None = None) -> Plan:
    """Make `table_id` be called `name`. `previous` is the name glidepath gave it before
    (an update), whose line is then ours to rewrite."""
    entries = facts.process(content)
    taken = [e for e in entries if e["name"] == name and e["id"] != table_id]
    if taken:
        raise PlanError(
            f"{facts.PATH}: the name {name!r} already belongs to table {taken[0]['id']} "
            f"(line {taken[0]['line'] + 1}); names must be unique, choose another"
        )
    same_id = [e for e in entries if e["id"] == table_id]
    foreign = [e for e in same_id if e["name"] not in (name, previous)]
    if foreign:
        raise PlanError(
            f"{facts.PATH}: table {table_id} is already named {foreign[0]['name']!r} "
            f"(line {foreign[0]['line'] + 1}), not by glidepath; choose another id or "
            "remove that line"
        )
    stale = {e["line"] for e in same_id if e["name"] != name}  # our previous name
    if not stale and any(e["name"] == name for e in same_id):
        return Plan.nothing(f"table {table_id} is already named {name!r}")

    lines = (content or "").splitlines(keepends=True)
    ours = line(table_id, name)
    present = any(e["name"] == name for e in same_id)
    kept: list[str] = []
    for number, text in enumerate(lines):
        if number in stale:
            if not present:  # the rename happens in place, where the old line was
                kept.append(ours)
                present = True
            continue
        kept.append(text)
    if not present:
        if kept and not kept[-1].endswith("\n"):
            kept[-1] += "\n"
        kept.append(ours)
    reason = (
        f"rename table {table_id}: {previous!r} -> {name!r}"
        if stale
        else f"name table {table_id} {name!r}"
    )
    return Plan.write(FileWrite(facts.PATH, "".join(kept)), reason=reason)


def plan_remove(table_id: int, name: str, content: str | None, adopted: bool = False) -> Plan:
    """Remove our line (and only it); absent, or renamed by someone else, is left alone.
    `adopted`: the same artifact was there before glidepath and glidepath never changed it
    (stored at create), so destroying the stack leaves it, as it was before."""
    if adopted:
        return Plan.nothing(f"table {table_id} {name!r} was named before glidepath; left as is")
    if content is None:
        return Plan.nothing(f"{facts.PATH} does not exist; table {table_id} is not named")
    entries = facts.process(content)
    ours = {e["line"] for e in entries if e["id"] == table_id and e["name"] == name}
    if not ours:
        others = [e["name"] for e in entries if e["id"] == table_id]
        if others:
            return Plan.nothing(
                f"table {table_id} is now named {others[0]!r}, not by glidepath; left as is"
            )
        return Plan.nothing(f"table {table_id} {name!r} is already absent")
    lines = content.splitlines(keepends=True)
    kept = [text for number, text in enumerate(lines) if number not in ours]
    return Plan.write(
        FileWrite(facts.PATH, "".join(kept)), reason=f"unname table {table_id} {name!r}"
    )
