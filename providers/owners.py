"""Which stacks hold a host artifact that several stacks share: a kernel parameter they
all set, the vif-route script their VMs all need. One empty file per owner (the stack,
`<project>.<stack>`) under `OWNERS_DIR/<artifact>/`, on the host itself, so stacks that
know nothing of each other see each other there. A shared artifact is put back or
removed only when its last owner lets go; until then each owner only adds or removes its
own file. Facts (`list_command`, `process`) and plans are pure; providers run them.
"""

from __future__ import annotations

from providers import validate
from providers.plans import Plan
from providers.transport import CommandResult

#: Persistent, per host (the lab binds it per host namespace).
OWNERS_DIR = "/var/lib/glidepath/owners"


parse_owner = validate.owner_name


def is_owner(name: str) -> bool:
    """True for a name `parse_owner` accepts (files on a host may be called anything)."""
    try:
        validate.owner_name(name)
    except validate.Invalid:
        return False
    return True


def _artifact_dir(artifact: str) -> str:
    # An artifact's name is a plain file name, by the same rule as an owner's.
    if not is_owner(artifact):
        raise ValueError(f"{artifact!r} is not an artifact name")
    return f"{OWNERS_DIR}/{artifact}"


def list_command(artifact: str) -> list[str]:
    return ["find", _artifact_dir(artifact), "-mindepth", "1", "-maxdepth", "1", "-printf", "%f\\n"]


def process(result: CommandResult) -> set[str]:
    """find's output -> the owners; a directory that does not exist yet has none."""
    if not result.ok and "No such file or directory" not in result.stderr:
        raise RuntimeError(f"listing owners failed: {result.stderr.strip()}")
    return {line for line in result.stdout.splitlines() if line}


def plan_claim(artifact: str, owner: str, owners: set[str]) -> Plan:
    if owner in owners:
        return Plan.nothing(f"{owner} holds {artifact} already")
    path = f"{_artifact_dir(artifact)}/{parse_owner(owner)}"
    return Plan.run(
        ["install", "-D", "-m", "0644", "/dev/null", path], reason=f"{owner} holds {artifact}"
    )


def plan_release(artifact: str, owner: str, owners: set[str]) -> Plan:
    if owner not in owners:
        return Plan.nothing(f"{owner} does not hold {artifact}")
    directory = _artifact_dir(artifact)
    path = f"{directory}/{parse_owner(owner)}"
    if owners - {owner}:
        return Plan.run(["rm", "-f", "--", path], reason=f"{owner} lets go of {artifact}")
    # The last one: its empty directory goes too (unless something else appeared there).
    return Plan.run(
        ["rm", "-f", "--", path],
        ["rmdir", "--ignore-fail-on-non-empty", "--", directory],
        reason=f"{owner}, the last holder, lets go of {artifact}",
    )


def others(owner: str, owners: set[str]) -> list[str]:
    """The other stacks that hold the artifact, sorted (what a delete leaves it to)."""
    return sorted(owners - {owner})
