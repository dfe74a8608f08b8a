"""A VM's disks, raw files on its hosts: what they are, what a move's target needs, and
creating them (for a new VM, and on a move's target before the copy)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from providers.migration import MIB, log
from providers.transport import SshSession


@dataclass(frozen=True)
class DiskCheck:
    """What pre-flight found for one disk on the target host."""

    path: str
    source_bytes: int
    target_bytes: int | None  # None: absent on the target
    target_free_bytes: int | None  # free space in the target directory (absent case)


def plan_target_disks(checks: list[DiskCheck]) -> tuple[list[str], dict[str, int], list[str]]:
    """-> (disks to create on the target, slices for bigger targets, problems).

    With libvirt 9 and QEMU 7.2 a target of another size fails the disk copy, so a
    bigger target gets a storage slice of the source's size and a smaller one is refused.
    """
    create: list[str] = []
    slices: dict[str, int] = {}
    problems: list[str] = []
    for check in checks:
        if check.target_bytes is None:
            if check.target_free_bytes is None:
                problems.append(f"{check.path}: its directory does not exist on the target")
            elif check.target_free_bytes < check.source_bytes:
                problems.append(
                    f"{check.path}: {check.source_bytes // MIB} MiB needed on the target, "
                    f"{check.target_free_bytes // MIB} MiB free"
                )
            else:
                create.append(check.path)
        elif check.target_bytes < check.source_bytes:
            problems.append(
                f"{check.path}: the target file is {check.target_bytes // MIB} MiB, smaller "
                f"than the source's {check.source_bytes // MIB} MiB; grow or remove it"
            )
        elif check.target_bytes > check.source_bytes:
            slices[check.path] = check.source_bytes
    return create, slices, problems


def file_size(session: SshSession, path: str) -> int | None:
    result = session.run(["stat", "-L", "-c", "%s", "--", path], check=False)
    if not result.ok:
        return None
    return int(result.stdout.strip())


def free_bytes(session: SshSession, directory: str) -> int | None:
    result = session.run(["df", "-B1", "--output=avail", "--", directory], check=False)
    if not result.ok:
        return None
    return int(result.stdout.split()[-1])


def _directory(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


def disk_checks(
    source: SshSession, target: SshSession, disks: list[dict[str, Any]]
) -> list[DiskCheck]:
    checks = []
    for disk in disks:
        source_bytes = file_size(source, disk["path"])
        if source_bytes is None:
            source_bytes = int(disk["size_mib"]) * MIB
        target_bytes = file_size(target, disk["path"])
        free = None
        if target_bytes is None:
            free = free_bytes(target, _directory(disk["path"]))
        checks.append(DiskCheck(disk["path"], source_bytes, target_bytes, free))
    return checks


def ensure_disks(session: SshSession, disks: list[dict[str, Any]]) -> None:
    """A new VM's disks, created empty at their size where they are absent."""
    for disk in disks:
        size = file_size(session, disk["path"])
        if size is None:
            log(f"{session.endpoint.name}: creating disk {disk['path']} ({disk['size_mib']} MiB)")
            session.run(["install", "-d", "-m", "0755", _directory(disk["path"])])
            session.run(
                ["qemu-img", "create", "-q", "-f", "raw", disk["path"], f"{disk['size_mib']}M"]
            )


def create_target_disks(
    source: SshSession, target: SshSession, paths: list[str], disks: list[dict[str, Any]]
) -> None:
    """A move's target disks (`paths`, as pre-flight planned them), each of its source
    file's size: the copy needs both the same size."""
    for path in paths:
        size_mib = next(int(d["size_mib"]) for d in disks if d["path"] == path)
        source_size = file_size(source, path) or size_mib * MIB
        target.run(["qemu-img", "create", "-q", "-f", "raw", path, str(source_size)])


def remove_disks(session: SshSession, disks: list[dict[str, Any]]) -> None:
    """A removed VM's disk files (`delete_disks`), once its domain is stopped and undefined."""
    if disks:
        session.run(["rm", "-f", "--", *(disk["path"] for disk in disks)])
