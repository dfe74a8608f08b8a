"""Pure planners: desired state + facts in, the exact argv to run out (or none, with why)."""

from __future__ import annotations

from dataclasses import dataclass, field

Argv = tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    """Commands to run in order; `reason` says why there are none (or what they do)."""

    commands: tuple[Argv, ...] = field(default_factory=tuple)
    reason: str = ""

    @staticmethod
    def nothing(reason: str) -> Plan:
        return Plan((), reason)

    @staticmethod
    def run(*commands: Argv | list[str], reason: str = "") -> Plan:
        return Plan(tuple(tuple(c) for c in commands), reason)

    def __bool__(self) -> bool:
        return bool(self.commands)


class PlanError(ValueError):
    """The desired state cannot be reached from these facts (for example a name clash)."""
