"""VmPlacement's input fields, checked and canonicalised (its `check` runs them)."""

from __future__ import annotations

from typing import Any

from providers import validate
from providers.base import parse_endpoint


def parse_disks(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise validate.Invalid("must be a list of {path, size_mib}")
    disks = []
    for disk in value:
        if not isinstance(disk, dict):
            raise validate.Invalid("each disk is {path, size_mib}")
        disks.append(
            {
                "path": validate.absolute_path(disk.get("path")),
                "size_mib": validate.integer(disk.get("size_mib"), 1, 1 << 24),
            }
        )
    if len({d["path"] for d in disks}) != len(disks):
        raise validate.Invalid("two disks share a path")
    return disks


def parse_boot(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise validate.Invalid("must be {kernel, initrd, cmdline}")
    boot = {}
    for key in ("kernel", "initrd"):
        if value.get(key):
            boot[key] = validate.absolute_path(value[key])
    cmdline = value.get("cmdline", "")
    if not isinstance(cmdline, str) or len(cmdline) > 1024 or "\n" in cmdline:
        raise validate.Invalid("cmdline must be one line of at most 1024 characters")
    if cmdline:
        boot["cmdline"] = cmdline
    return boot


def parse_migration(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise validate.Invalid("must be a mapping")
    return {
        "max_downtime_ms": validate.integer(value.get("max_downtime_ms", 100), 1, 60_000),
        "bandwidth_mib_s": validate.integer(value.get("bandwidth_mib_s", 0), 0, 1 << 20),
        "auto_converge": bool(value.get("auto_converge", True)),
        "timeout_s": validate.integer(value.get("timeout_s", 600), 1, 86_400),
    }


def parse_fleet(value: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict):
        raise validate.Invalid("must map host names to endpoints")
    return {name: parse_endpoint(endpoint) for name, endpoint in value.items()}


def domain_type(value: Any) -> str:
    if value not in ("qemu", "kvm"):
        raise validate.Invalid("must be 'kvm' or 'qemu' (TCG)")
    return str(value)
