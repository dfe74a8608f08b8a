"""Sysctl plans: `sysctl -w key=value` when the value differs, nothing when it matches."""

from __future__ import annotations

from providers.plans import Plan, PlanError


def plan_set(key: str, desired: str, current: str | None) -> Plan:
    if current is None:
        raise PlanError(f"sysctl {key} does not exist on this host (a missing interface?)")
    if current == desired:
        return Plan.nothing(f"sysctl {key} is already {desired}")
    return Plan.run(
        ["sysctl", "-q", "-w", f"{key}={desired}"], reason=f"{key}: {current} -> {desired}"
    )


def plan_restore(key: str, ours: str, previous: str | None, current: str | None) -> Plan:
    """On delete: put back what was there before us, unless someone changed it since."""
    if current is None:
        return Plan.nothing(f"sysctl {key} is gone (its interface was removed)")
    if previous is None or previous == ours:
        return Plan.nothing(f"sysctl {key} was already {ours} before glidepath; left as is")
    if current != ours:
        return Plan.nothing(
            f"sysctl {key} is {current}, changed since glidepath set {ours}; left as is"
        )
    return Plan.run(
        ["sysctl", "-q", "-w", f"{key}={previous}"], reason=f"{key}: restore {previous}"
    )
