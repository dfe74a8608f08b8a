"""What a host has at a VM disk's path, read machine-readably.

- `stat -L -c '%f %s %t %T' -- PATH`: the raw mode in hex (its S_IFMT bits say file, block
  device or directory; `%F` would say it in words the host's locale may translate), the
  size of a file, and a block device's major and minor numbers in hex.
- `blockdev --getsize64 PATH`: a block device's size in bytes (stat says 0 for one).
  blockdev takes no `--`; PATH is absolute (the schema's), so it never reads as an option.
- `lsblk --json --output NAME,TYPE,MOUNTPOINT -- PATH`: who else uses it, in the caller's
  mount namespace: where it is mounted (swap shows as `[SWAP]`), and what is built on it,
  which lsblk lists as its children (the holders in /sys/dev/block/<maj>:<min>/holders: a
  dm-crypt or LVM mapping, an md array; partitions with their own mounts). MOUNTPOINT, not
  util-linux 2.37's MOUNTPOINTS: one mount is enough to be in use, and older hosts have it.
- `vgs --reportformat json --units b --nosuffix -o vg_name,vg_free,vg_extent_size`: the
  volume groups, for a volume glidepath creates with lvcreate.
- a libvirt domain's XML: the disks it opens (`disk_sources`).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any, Literal, TypedDict

Argv = tuple[str, ...]

#: What stat's S_IFMT bits (the mode's top hex digit) say a path is.
PathType = Literal["file", "block", "directory", "other"]
_TYPES: dict[int, PathType] = {0x8: "file", 0x6: "block", 0x4: "directory"}


class PathStat(TypedDict):
    """`61b0 0 fd 3` (/dev/vg0/blog) -> {"type": "block", "size": 0, "device": "253:3"};
    `81a4 67108864 0 0` (a raw image) -> {"type": "file", "size": 67108864, "device": ""}."""

    type: PathType
    size: int
    device: str  # a block device's "major:minor", decimal; "" for anything else


class VolumeGroup(TypedDict):
    """vgs' `{"vg_name":"vg0", "vg_free":"10737418240", "vg_extent_size":"4194304"}` ->
    {"name": "vg0", "free": 10737418240, "extent": 4194304}."""

    name: str
    free: int
    extent: int


def stat_argv(path: str) -> Argv:
    return ("stat", "-L", "-c", "%f %s %t %T", "--", path)


def process_stat(stdout: str) -> PathStat:
    mode, size, major, minor = stdout.split()
    kind = _TYPES.get(int(mode, 16) >> 12, "other")
    device = f"{int(major, 16)}:{int(minor, 16)}" if kind == "block" else ""
    return {"type": kind, "size": int(size), "device": device}


def size_argv(path: str) -> Argv:
    return ("blockdev", "--getsize64", path)


def process_size(stdout: str) -> int:
    return int(stdout.strip())


def usage_argv(path: str) -> Argv:
    return ("lsblk", "--json", "--output", "NAME,TYPE,MOUNTPOINT", "--", path)


def process_usage(stdout: str) -> list[str]:
    """Why the block device is in use, one reason each (none: free for a VM to take).

    A mount of it or of anything on it counts, and so does any holder: a mapping on top of
    a volume is as busy as a mount (a partition is not, until something mounts it)."""
    reasons: list[str] = []
    for device in json.loads(stdout)["blockdevices"]:
        reasons += _users(device, "")
    return list(dict.fromkeys(reasons))


def _users(device: dict[str, Any], name: str) -> list[str]:
    """`device`'s mounts (`name`: how a reason names it, "" for the disk itself), then
    its children's, depth first."""
    found = []
    points = device.get("mountpoints") or [device.get("mountpoint")]  # either column
    for point in points:
        if point == "[SWAP]":
            found.append(f"{name} used as swap".lstrip())
        elif point:
            found.append(f"{name} mounted at {point}".lstrip())
    for child in device.get("children") or []:
        if child.get("type") != "part":
            found.append(f"held by {child['name']} ({child.get('type', '?')})")
        found += _users(child, child["name"])
    return found


def vgs_argv() -> Argv:
    return (
        "vgs", "--reportformat", "json", "--units", "b", "--nosuffix",
        "-o", "vg_name,vg_free,vg_extent_size",
    )  # fmt: skip


def process_vgs(stdout: str) -> dict[str, VolumeGroup]:
    """Every volume group of the host by name (LVM prints numbers as text; "B" is its unit
    suffix, which --nosuffix drops)."""
    groups: dict[str, VolumeGroup] = {}
    for report in json.loads(stdout).get("report", []):
        for vg in report.get("vg", []):
            groups[vg["vg_name"]] = {
                "name": vg["vg_name"],
                "free": _bytes(vg["vg_free"]),
                "extent": _bytes(vg["vg_extent_size"]),
            }
    return groups


def _bytes(value: Any) -> int:
    return int(str(value).strip().rstrip("Bb"))


def disk_sources(domain_xml: str) -> list[str]:
    """The files and block devices a domain's disks open (`<source file=...>` or
    `<source dev=...>`), in order."""
    root = ET.fromstring(domain_xml)  # noqa: S314 (libvirt's own XML)
    sources = []
    for source in root.findall("./devices/disk/source"):
        path = source.get("file") or source.get("dev")
        if path:
            sources.append(path)
    return sources
