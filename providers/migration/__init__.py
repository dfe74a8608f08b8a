"""A VM placement's live migration, one job per module (providers/vm_placement.py wires
them into the resource):

- `domain`: the domain XML (pure).
- `disks`: the VM's raw disk files on a host: sizes, what a target needs, creating them.
- `preflight`: the preview's sentence about a move and the read-only checks that it can work.
- `job`: the libvirt migration job itself: flags, parameters, putting a failed move back.
- `policy`: what to do at each poll of a running job (pure).
- `monitor`: the loop that polls the job, applies the policy and reports the outcome.
- `handover`: the VM's /32 moved from the source's tap to the target's at the pause.

And, beside the move, `removal`: what the placement's delete does to the VM (release it,
or shut it down by ACPI within a bound, then undefine it).
"""

from __future__ import annotations

MIB = 1024 * 1024


def log(line: str) -> None:
    # The engine relays a provider's stdout into the `pulumi up` output as it runs.
    print(line, flush=True)
