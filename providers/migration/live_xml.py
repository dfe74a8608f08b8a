"""An adopted VM's own definition, read from libvirt and never rewritten: which disks a
move copies, which tap it has, and the destination XML of its migration (its migratable
XML, with a storage slice where the target disk is bigger, as for a generated VM)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass


@dataclass(frozen=True)
class LiveDisk:
    path: str
    target: str  # vda, sda, ...


def _parse(xml: str) -> ET.Element:
    return ET.fromstring(xml)  # noqa: S314 (libvirt's own XML of a domain)


def _source_path(disk: ET.Element) -> str | None:
    source = disk.find("source")
    if source is None:
        return None
    return source.get("file") or source.get("dev")


def disks(xml: str) -> list[LiveDisk]:
    """The disks a move copies: writable, not shared, backed by a file or a block device
    (a CD-ROM, a read-only or shareable disk stays where it is: its path must exist on
    the target, as libvirt requires)."""
    found = []
    for disk in _parse(xml).iterfind("devices/disk"):
        if disk.get("device", "disk") != "disk" or disk.get("type") not in ("file", "block"):
            continue
        if disk.find("readonly") is not None or disk.find("shareable") is not None:
            continue
        path, target = _source_path(disk), disk.find("target")
        if path and target is not None and target.get("dev"):
            found.append(LiveDisk(path, str(target.get("dev"))))
    return found


def interface_targets(xml: str) -> list[str]:
    """The tap names of its interfaces (`<target dev=...>`), in order."""
    return [
        str(target.get("dev"))
        for target in _parse(xml).iterfind("devices/interface/target")
        if target.get("dev")
    ]


def with_slices(xml: str, slices: dict[str, int]) -> str:
    """`xml` with a storage slice of `slices[path]` bytes on each of those disks' sources:
    the guest keeps seeing its disk's size on a bigger target. Unchanged without slices."""
    if not slices:
        return xml
    root = _parse(xml)
    for disk in root.iterfind("devices/disk"):
        path, source = _source_path(disk), disk.find("source")
        if source is None or path not in slices:
            continue
        for old in source.findall("slices"):
            source.remove(old)
        holder = ET.SubElement(source, "slices")
        ET.SubElement(
            holder, "slice", {"type": "storage", "offset": "0", "size": str(slices[path])}
        )
    return ET.tostring(root, encoding="unicode")
