"""The closing summary of a `pulumi up` (pure): one line per VM that has moved and per
network that has cut over, from the providers' `last_migration` / `last_cutover` outputs.

It is exported as the stack output `summary`, so the CLI prints it at the end of every
`up` (and shows it changed when this run moved something).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MIB = 1024 * 1024


def _when(record: Mapping[str, Any]) -> str:
    at = record.get("at")
    return f" at {str(at).replace('T', ' ').replace('Z', ' UTC')}" if at else ""


def migration_line(record: Mapping[str, Any] | None) -> str:
    if not record:
        return "not moved yet"
    return (
        f"moved {record.get('from')} -> {record.get('to')}{_when(record)}: "
        f"{float(record.get('seconds', 0)):.1f} s, QEMU downtime "
        f"{int(record.get('downtime_ms') or 0)} ms, "
        f"{int(record.get('bytes', 0)) // MIB} MiB copied"
    )


def cutover_line(record: Mapping[str, Any] | None) -> str:
    if not record:
        return "no cutover yet"
    first = record.get("first_packet_ms")
    egress = record.get("egress_switched_ms")
    seen = (
        f"first direct packet {int(first)} ms after the switch"
        if first is not None
        else "no direct packet seen before the timeout"
    )
    after = (
        f", egress switched {int(egress) - int(first)} ms later"
        if first is not None and egress is not None
        else ""
    )
    return f"cut over {record.get('from')} -> {record.get('to')}{_when(record)}: {seen}{after}"


def summary(
    migrations: Mapping[str, Mapping[str, Any] | None],
    cutovers: Mapping[str, Mapping[str, Any] | None],
) -> dict[str, str]:
    lines = {name: migration_line(record) for name, record in migrations.items()}
    lines.update({name: cutover_line(record) for name, record in cutovers.items()})
    return lines
