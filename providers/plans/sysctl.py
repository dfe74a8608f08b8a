"""Sysctl plans: `sysctl -w key=value` when the value differs, nothing when it matches.

A kernel parameter is shared by every stack that sets it on a host: each holds it with
its owner file (providers/owners: `sysctl.<key>`), the first keeps the value from before
glidepath beside the owner files (`saved_path`), and only the last to let go puts it back.
"""

from __future__ import annotations

from collections.abc import Collection

from providers import owners, validate
from providers.plans import FileWrite, Plan, PlanError


def artifact(key: str) -> str:
    """The owners' name for the parameter: `sysctl.net.ipv4.ip_forward`."""
    return f"sysctl.{key}"


def saved_path(key: str) -> str:
    """Where the value from before glidepath waits for the last owner to go."""
    return f"{owners.OWNERS_DIR}/{artifact(key)}.before-glidepath"


def check_owner(owner: str) -> str:
    try:
        return owners.parse_owner(owner)
    except validate.Invalid as err:
        raise PlanError(str(err)) from err


def plan_set(key: str, desired: str, current: str | None) -> Plan:
    if current is None:
        raise PlanError(f"sysctl {key} does not exist on this host (a missing interface?)")
    if current == desired:
        return Plan.nothing(f"sysctl {key} is already {desired}")
    return Plan.run(
        ["sysctl", "-q", "-w", f"{key}={desired}"], reason=f"{key}: {current} -> {desired}"
    )


def plan_save(
    key: str,
    current: str | None,
    held_by: Collection[str],
    saved: str | None,
    previous: str | None = None,
) -> Plan:
    """The first owner keeps the value it finds (the one from before glidepath) on the
    host, for whichever owner goes last. `held_by`: the owners now; `saved`: the value
    kept already, if any; `previous`: on update, what this resource found before it first
    set the key (a state from before the owner files: the value now is its own)."""
    if saved is not None:
        return Plan.nothing(f"sysctl {key} was {saved} before glidepath (kept)")
    if held_by:
        return Plan.nothing(f"sysctl {key} is held by {', '.join(sorted(held_by))} already")
    before = previous if previous is not None else current
    if before is None:
        return Plan.nothing(f"sysctl {key} does not exist: no value to keep")
    return Plan.write(
        FileWrite(saved_path(key), f"{before}\n"), reason=f"keep {key}={before} from before"
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


def plan_release(
    key: str,
    owner: str,
    held_by: Collection[str],
    ours: str,
    previous: str | None,
    saved: str | None,
    current: str | None,
) -> Plan:
    """On delete: let go of the parameter. While other owners hold it, it stays as it is;
    the last owner puts back the value from before glidepath (`saved` on the host, else
    its own `previous`), unless someone changed it since, and removes what it kept."""
    held = set(held_by)
    release = owners.plan_release(artifact(key), check_owner(owner), held)
    others = owners.others(owner, held)
    if others:
        return Plan(
            release.commands,
            f"sysctl {key} left at {current} for {', '.join(others)}",
        )
    restore = plan_restore(key, ours, saved if saved is not None else previous, current)
    forget = (("rm", "-f", "--", saved_path(key)),) if saved is not None else ()
    # The value first: if that fails, the owner file still says who holds it.
    return Plan(restore.commands + release.commands + forget, restore.reason)
