"""Disk plans: a VM disk created where it is missing, as its kind asks.

A file disk is a raw image made by `qemu-img`. A block device (a path under /dev/) is
the operator's to make, at the same path on every host (the blog's rule), unless the
stack asks for `create: lvcreate`: then it is an LVM volume in the volume group its path
names. lvcreate rounds the size up to whole extents, so the volume may come out bigger
than asked (a move then puts a storage slice over it).
"""

from __future__ import annotations

from providers import validate
from providers.plans import Plan, PlanError
from providers.schema.vm_placement import disk_kind

#: lvcreate takes a size in bytes only as whole 512-byte sectors.
SECTOR = 512


def plan_create(path: str, size_bytes: int, create: str | None = None) -> Plan:
    """Create the disk at `path`, `size_bytes` big (at least), which is not there now."""
    if disk_kind(path) == "file":
        if create is not None:
            raise PlanError(f"{path}: create: {create} is for block devices, not files")
        return Plan.run(
            ("qemu-img", "create", "-q", "-f", "raw", path, str(size_bytes)),
            reason=f"create {path}, a raw file of {size_bytes} bytes",
        )
    if create != "lvcreate":
        raise PlanError(
            f"{path} does not exist: create the volume ({size_bytes} bytes or more), "
            "or set create: lvcreate on the disk"
        )
    try:
        vg, lv = validate.lvm_volume(path)
    except validate.Invalid as err:
        raise PlanError(str(err)) from None
    size = -(-size_bytes // SECTOR) * SECTOR
    return Plan.run(
        # --yes: no prompt over SSH (to wipe an old signature found where the LV lands).
        ("lvcreate", "--yes", "--name", lv, "--size", f"{size}b", vg),
        reason=f"create LV {lv} in VG {vg}, {size} bytes rounded up to whole extents",
    )
