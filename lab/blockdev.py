"""Lab volumes: a block device at the same `/dev/<vg>/<lv>` on several lab hosts, each
its own, as the blog's LVM volumes are on its two servers, so glidepath's block-disk path
(domain XML, pre-flight, the live copy into a volume) runs for real in the lab.

This machine's kernel has no device-mapper, so neither LVM nor LUKS runs here. A lab
volume is a loop device over a file in the host's state dir (`topology.disk_file`),
exposed at `/dev/<vg>/<lv>` inside that host's mount namespace only: a small tmpfs
mounted on /dev/<vg> there holds a device node with the loop device's numbers. /dev is
the one devtmpfs all namespaces share, so the empty directory /dev/<vg> under the tmpfs
is made there once (recorded in the lab's state, removed by `lab down`).

Everything is recorded before it is made: `lab down` detaches the loop devices still over
a lab volume file (by the name losetup gives) and removes the files with the state dir.
Loop devices are found by their backing file, never by number: another user's loop
devices are never touched.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lab import lifecycle
from lab import topology as t
from lab.proc import run, sh
from providers import validate

#: The tmpfs on /dev/<vg> in a host is the lab's when its source says so.
TMPFS_SOURCE = "glidepath-lab-volumes"


@dataclass(frozen=True)
class Volume:
    """A lab volume on one host: `path` there, `loop` under it, `file` under that."""

    host: str
    path: str
    loop: str
    file: Path


def create_volume(host: str, path: str, size_mib: int, *, random_from_mib: int = 0) -> Volume:
    """A fresh volume of `size_mib` at `path` (`/dev/<vg>/<lv>`) on `host`, zeros, or random
    bytes from `random_from_mib` on (0: all zeros), so a move has real data to copy past
    the guest writer's sectors. Any earlier volume at that path on that host goes first."""
    vg, _ = validate.lvm_volume(path)
    remove_volume(host, path)
    file = t.disk_file(host, path)
    directory = f"/dev/{vg}"
    with lifecycle.recording() as state:
        if str(file) not in state.volume_files:
            state.volume_files.append(str(file))
        if not os.path.isdir(directory):
            state.created_dirs.append(directory)
            state.save()
            os.mkdir(directory, 0o755)
    file.parent.mkdir(parents=True, exist_ok=True)
    with open(file, "wb") as f:
        f.truncate(size_mib * 1024 * 1024)
    if 0 < random_from_mib < size_mib:
        sh(
            [
                "dd", "if=/dev/urandom", f"of={file}", "bs=1M", f"seek={random_from_mib}",
                f"count={size_mib - random_from_mib}", "conv=notrunc", "status=none",
            ],
            timeout=300,
        )  # fmt: skip
    loop = sh(["losetup", "--find", "--show", str(file)]).stdout.strip()
    device = os.stat(loop).st_rdev
    if not _tmpfs_mounted(host, directory):
        argv = ["mount", "-t", "tmpfs", "-o", "mode=0755,size=64k", TMPFS_SOURCE, directory]
        run(host, argv)
    run(host, ["mknod", "-m", "0660", path, "b", str(os.major(device)), str(os.minor(device))])
    return Volume(host, path, loop, file)


def remove_volume(host: str, path: str) -> None:
    """The volume at `path` on `host` gone: its node (and the tmpfs when it was the last
    there), its loop device, its file. Nothing there is fine."""
    vg, _ = validate.lvm_volume(path)
    directory = f"/dev/{vg}"
    if _tmpfs_mounted(host, directory):
        run(host, ["rm", "-f", "--", path])
        if not run(host, ["ls", "-A", "--", directory]).stdout.strip():
            run(host, ["umount", directory])
    file = t.disk_file(host, path)
    for loop in lifecycle.loop_devices([str(file)]):
        # A QEMU that still has it open keeps it until it closes (the kernel's autoclear).
        sh(["losetup", "--detach", loop])
    file.unlink(missing_ok=True)
    with lifecycle.recording() as state:
        if str(file) in state.volume_files:
            state.volume_files.remove(str(file))


def _tmpfs_mounted(host: str, directory: str) -> bool:
    """Whether the lab's tmpfs is mounted on `directory` in `host`'s mount namespace."""
    found = run(
        host, ["findmnt", "--noheadings", "--output", "SOURCE", "--mountpoint", directory],
        check=False,
    )  # fmt: skip
    return TMPFS_SOURCE in found.stdout.split()
