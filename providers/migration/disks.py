"""A VM's disks on its hosts: raw files, or block devices where the path is under /dev/
(an LVM volume, on LUKS or not, as in the blog). What is at a disk's path, what a move's
target needs, and creating what is missing (for a new VM, and on a move's target before
the copy). The commands and their parsers are in providers/facts/disk.py, the creating
argv in providers/plans/disk.py."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from providers import validate
from providers.facts import disk as facts
from providers.facts.disk import PathType
from providers.migration import MIB, log
from providers.plans import PlanError
from providers.plans.disk import plan_create
from providers.schema.vm_placement import disk_kind
from providers.transport import SshSession


@dataclass(frozen=True)
class Found:
    """What one host has at a disk's path."""

    type: PathType | None  # None: nothing there
    bytes: int | None = None  # a file's or a block device's size
    in_use: tuple[str, ...] = ()  # why something else holds it (mounts, holders, domains)


@dataclass(frozen=True)
class DiskCheck:
    """What pre-flight found for one disk of a move."""

    path: str
    source_bytes: int
    target: Found
    #: Where the target is absent: the bytes free where it would be made (its directory for
    #: a file, its volume group for `create: lvcreate`); None: no such directory or VG.
    room: int | None = None
    create: str | None = None  # the disk's `create`
    extent: int = 0  # the VG's extent size: lvcreate rounds up to whole extents
    room_error: str = ""  # why the room could not be read (no LVM tools on the target)


#: What a path holds, as a problem names it.
_WHAT: dict[PathType, str] = {
    "file": "file",
    "block": "block device",
    "directory": "directory",
    "other": "special file",
}


def size_text(n: int) -> str:
    """A disk size as an operator compares it: whole MiB, else exact bytes."""
    return f"{n // MIB} MiB" if n % MIB == 0 else f"{n} bytes"


def plan_target_disks(
    checks: list[DiskCheck], *, source: str, target: str
) -> tuple[list[str], dict[str, int], list[str]]:
    """-> (disks to create on the target, slices for bigger targets, problems).

    With libvirt 9 and QEMU 7.2 a target of another size fails the disk copy, so a
    bigger target gets a storage slice of the source's size and a smaller one is refused.
    """
    create: list[str] = []
    slices: dict[str, int] = {}
    problems: list[str] = []
    for check in checks:
        plan = _plan_block if disk_kind(check.path) == "block" else _plan_file
        made, problem = plan(check, source, target)
        if problem:
            problems += problem
        elif made:
            create.append(check.path)
        elif check.target.bytes is not None and check.target.bytes > check.source_bytes:
            slices[check.path] = check.source_bytes
    return create, slices, problems


def _plan_file(check: DiskCheck, source: str, target: str) -> tuple[bool, list[str]]:
    """-> (create it, problems)."""
    path, found, need = check.path, check.target, check.source_bytes
    if found.type is None:
        if check.room is None:
            return False, [f"{path}: its directory does not exist on the target"]
        if check.room < need:
            return False, [
                f"{path}: {need // MIB} MiB needed on the target, {check.room // MIB} MiB free"
            ]
        return True, []
    problems = [f"{path} on {target} is in use: {'; '.join(found.in_use)}"] if found.in_use else []
    if found.type != "file":
        problems.append(f"{path} on {target} is a {_WHAT[found.type]}, not a file")
    elif (found.bytes or 0) < need:
        problems.append(
            f"{path}: the target file is {size_text(found.bytes or 0)}, smaller than the "
            f"source's {size_text(need)}; grow or remove it"
        )
    return False, problems


def _plan_block(check: DiskCheck, source: str, target: str) -> tuple[bool, list[str]]:
    """-> (create it with lvcreate, problems). The blog's rule: the volume exists on the
    target at the same path, the same size or bigger."""
    path, found, need = check.path, check.target, check.source_bytes
    if found.type is None:
        if check.create != "lvcreate":
            return False, [
                f"{path}: no such block device on {target}; create the volume there "
                f"({size_text(need)} or bigger, as on {source}), or set create: lvcreate"
            ]
        vg, _ = validate.lvm_volume(path)
        if check.room_error:
            return False, [f"{path}: cannot list volume groups on {target}: {check.room_error}"]
        if check.room is None:
            return False, [f"{path}: volume group {vg} does not exist on {target}"]
        rounded = -(-need // check.extent) * check.extent if check.extent else need
        if check.room < rounded:
            return False, [
                f"{path}: {size_text(rounded)} needed in volume group {vg} on {target}, "
                f"{check.room // MIB} MiB free"
            ]
        return True, []
    problems = [f"{path} on {target} is in use: {'; '.join(found.in_use)}"] if found.in_use else []
    if found.type != "block":
        problems.append(f"{path} on {target} is a {_WHAT[found.type]}, not a block device")
    elif (found.bytes or 0) < need:
        problems.append(
            f"{path}: the target volume on {target} is {size_text(found.bytes or 0)}, "
            f"smaller than the source's {size_text(need)} on {source}; grow it (lvextend) "
            "or remove it"
        )
    return False, problems


def read_path(session: SshSession, path: str, *, usage: bool = False) -> Found:
    """What `session`'s host has at `path`; `usage`: also who holds a block device."""
    result = session.run(facts.stat_argv(path), check=False)
    if not result.ok:
        return Found(None)
    stat = facts.process_stat(result.stdout)
    if stat["type"] != "block":
        return Found(stat["type"], stat["size"])
    size = facts.process_size(session.run(facts.size_argv(path)).stdout)
    in_use: tuple[str, ...] = ()
    if usage:
        in_use = tuple(facts.process_usage(session.run(facts.usage_argv(path)).stdout))
    return Found("block", size, in_use)


def free_bytes(session: SshSession, directory: str) -> int | None:
    result = session.run(["df", "-B1", "--output=avail", "--", directory], check=False)
    if not result.ok:
        return None
    return int(result.stdout.split()[-1])


def volume_groups(session: SshSession) -> tuple[dict[str, facts.VolumeGroup], str]:
    """-> (the host's volume groups, why they could not be read: "" when they were)."""
    result = session.run(facts.vgs_argv(), check=False)
    if not result.ok:
        lines = (result.stderr or result.stdout).strip().splitlines()
        why = lines[-1] if lines else f"exit status {result.exit_status}"
        return {}, f"`vgs` failed ({why}); create: lvcreate needs LVM (lvm2) there"
    return facts.process_vgs(result.stdout), ""


def domain_users(conn: Any, exclude: str) -> dict[str, list[str]]:
    """Disk path -> the other libvirt domains on `conn`'s host that open it (defined ones
    too: starting one would take the disk)."""
    users: dict[str, list[str]] = {}
    for dom in conn.listAllDomains(0):
        if dom.name() != exclude:
            for path in facts.disk_sources(dom.XMLDesc(0)):
                users.setdefault(path, []).append(dom.name())
    return users


def _directory(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


def _with_users(found: Found, path: str, users: Mapping[str, list[str]]) -> Found:
    named = tuple(f"disk of domain {name}" for name in users.get(path, []))
    return Found(found.type, found.bytes, found.in_use + named) if named else found


def disk_checks(
    source: SshSession,
    target: SshSession,
    disks: list[dict[str, Any]],
    users: Mapping[str, list[str]] | None = None,
) -> list[DiskCheck]:
    """Read both hosts for each disk; `users`: the target's other domains' disks."""
    checks = []
    groups: tuple[dict[str, facts.VolumeGroup], str] | None = None
    for disk in disks:
        path, create = disk["path"], disk.get("create")
        block = disk_kind(path) == "block"
        on_source = read_path(source, path)
        source_bytes = on_source.bytes if on_source.type in ("file", "block") else None
        if source_bytes is None:
            source_bytes = int(disk["size_mib"]) * MIB
        found = _with_users(read_path(target, path, usage=block), path, users or {})
        room, extent, room_error = None, 0, ""
        if found.type is None and not block:
            room = free_bytes(target, _directory(path))
        elif found.type is None and create == "lvcreate":
            groups = groups or volume_groups(target)
            vg = groups[0].get(validate.lvm_volume(path)[0])
            room_error = groups[1]
            if vg is not None:
                room, extent = vg["free"], vg["extent"]
        checks.append(DiskCheck(path, source_bytes, found, room, create, extent, room_error))
    return checks


def _create(session: SshSession, path: str, size_bytes: int, create: str | None) -> None:
    try:
        plan = plan_create(path, size_bytes, create)
    except PlanError as err:
        raise RuntimeError(f"{session.endpoint.name}: {err}") from None
    for argv in plan.commands:
        session.run(argv)


def ensure_disks(
    session: SshSession, disks: list[dict[str, Any]], users: Mapping[str, list[str]] | None = None
) -> None:
    """A new VM's disks: created empty at their size where absent (a file; a volume with
    `create: lvcreate`), and refused where the path holds something else or another user
    holds it (`users`: other domains' disks on the host)."""
    host = session.endpoint.name
    for disk in disks:
        path, size_mib = disk["path"], int(disk["size_mib"])
        block = disk_kind(path) == "block"
        found = _with_users(read_path(session, path, usage=block), path, users or {})
        if found.type is None:
            log(f"{host}: creating disk {path} ({size_mib} MiB)")
            if not block:
                session.run(["install", "-d", "-m", "0755", _directory(path)])
            _create(session, path, size_mib * MIB, disk.get("create"))
            continue
        want: PathType = "block" if block else "file"
        if found.type != want:
            raise RuntimeError(f"{host}: {path} is a {_WHAT[found.type]}, not a {_WHAT[want]}")
        if found.in_use:
            raise RuntimeError(f"{host}: {path} is in use: {'; '.join(found.in_use)}")


def create_target_disks(
    source: SshSession, target: SshSession, paths: list[str], disks: list[dict[str, Any]]
) -> dict[str, int]:
    """A move's target disks (`paths`, as pre-flight planned them), each of its source's
    size: the copy needs both the same size. -> slices for those that came out bigger
    (lvcreate rounds up to whole extents)."""
    slices: dict[str, int] = {}
    for path in paths:
        disk = next(d for d in disks if d["path"] == path)
        on_source = read_path(source, path)
        size = on_source.bytes if on_source.type in ("file", "block") else None
        size = size or int(disk["size_mib"]) * MIB
        _create(target, path, size, disk.get("create"))
        if disk_kind(path) == "block":
            made = read_path(target, path)
            if made.type != "block" or made.bytes is None:
                raise RuntimeError(f"{target.endpoint.name}: {path} is not there after lvcreate")
            if made.bytes > size:
                slices[path] = size
                log(f"{target.endpoint.name}: {path} came out {size_text(made.bytes)}: sliced")
    return slices


def remove_disks(session: SshSession, disks: list[dict[str, Any]]) -> None:
    """A removed VM's disk files (`delete_disks`), once its domain is stopped and undefined."""
    if disks:
        session.run(["rm", "-f", "--", *(disk["path"] for disk in disks)])
