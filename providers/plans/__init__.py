"""Pure planners: desired state + facts in, the exact argv to run out (or none, with why)."""

from __future__ import annotations

from dataclasses import dataclass, field

Argv = tuple[str, ...]


@dataclass(frozen=True)
class FileWrite:
    """Replace a file's whole content atomically (written beside it, then renamed)."""

    path: str
    content: str
    mode: str = "0644"


@dataclass(frozen=True)
class Plan:
    """File writes, then commands, in order; `reason` says why there is nothing to do
    (or what the steps do)."""

    commands: tuple[Argv, ...] = field(default_factory=tuple)
    reason: str = ""
    writes: tuple[FileWrite, ...] = field(default_factory=tuple)

    @staticmethod
    def nothing(reason: str) -> Plan:
        return Plan((), reason)

    @staticmethod
    def run(*commands: Argv | list[str], reason: str = "") -> Plan:
        return Plan(tuple(tuple(c) for c in commands), reason)

    @staticmethod
    def write(
        *writes: FileWrite, then: tuple[Argv | list[str], ...] = (), reason: str = ""
    ) -> Plan:
        return Plan(tuple(tuple(c) for c in then), reason, tuple(writes))

    def __bool__(self) -> bool:
        return bool(self.commands or self.writes)


class PlanError(ValueError):
    """The desired state cannot be reached from these facts (for example a name clash)."""
