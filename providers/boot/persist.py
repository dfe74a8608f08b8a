"""Persisted forms of glidepath's host artifacts: the records the boot step reads, the
boot step itself, and its systemd units. Pure plans; the providers apply them.

Per artifact (docs/architecture.md, "After a reboot"):
- sysctls: a file in /etc/sysctl.d per key (`sysctl_file`), which the OS applies at boot;
- the rt_tables entry and the vif-route script: files already, nothing to add;
- rules, routes, marks, tunnel devices and keepers: one JSON record each under
  BOOT_DIR, applied at boot by `restore.py`, installed as RESTORER;
- domains: libvirt's own autostart (VmPlacement).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from providers.boot import restore
from providers.plans import FileWrite, Plan

BOOT_DIR = restore.BOOT_DIR
RESTORER = "/usr/local/lib/glidepath/boot-restore"
RESTORE_UNIT = "/etc/systemd/system/glidepath-restore.service"
KEEPER_UNIT = "/etc/systemd/system/glidepath-tunnel@.service"
SYSCTL_DIR = "/etc/sysctl.d"
#: Whether a host runs systemd: the check sd_booted(3) makes.
SYSTEMD_DIR = "/run/systemd/system"


def record_name(kind: str, *parts: object) -> str:
    """`route-201-default-100`: the kind, then the artifact's key, in file-name characters."""
    if kind not in restore.ORDER:
        raise ValueError(f"unknown record kind {kind!r}")
    key = "-".join(str(p) for p in parts)
    return f"{kind}-" + re.sub(r"[^A-Za-z0-9.@_-]", "_", key)


def record_path(name: str) -> str:
    return f"{BOOT_DIR}/{name}.json"


def render(kind: str, fields: dict[str, Any]) -> str:
    """A record's file content: canonical JSON, so an equal record is an equal file."""
    return json.dumps({"kind": kind, **fields}, sort_keys=True, indent=1) + "\n"


def plan_record(name: str, content: str, installed: str | None) -> Plan:
    """Write the record unless the host has exactly this one."""
    if installed == content:
        return Plan.nothing(f"{record_path(name)} is up to date")
    return Plan.write(
        FileWrite(record_path(name), content, "0600"),
        reason=f"{'write' if installed is None else 'update'} boot record {name}",
    )


def plan_forget(name: str, present: bool) -> Plan:
    """Remove the record (delete: the artifact no longer comes back at boot)."""
    if not present:
        return Plan.nothing(f"boot record {name} is already absent")
    return Plan.run(("rm", "-f", "--", record_path(name)), reason=f"remove boot record {name}")


# --- sysctls -----------------------------------------------------------------------


def sysctl_file(key: str) -> str:
    # Applied in file-name order, the last value wins: after every file of the host's
    # own, 99-sysctl.conf (/etc/sysctl.conf) included, as glidepath's `sysctl -w` is.
    return f"{SYSCTL_DIR}/99-zz-glidepath-{key}.conf"


def sysctl_content(key: str, value: str) -> str:
    owners = f"/var/lib/glidepath/owners/sysctl.{key}"
    return f"# glidepath: held by the stacks in {owners}\n{key} = {value}\n"


def plan_sysctl(key: str, value: str, installed: str | None) -> Plan:
    content = sysctl_content(key, value)
    if installed == content:
        return Plan.nothing(f"{sysctl_file(key)} is up to date")
    return Plan.write(FileWrite(sysctl_file(key), content), reason=f"persist {key} = {value}")


def plan_sysctl_forget(key: str, present: bool) -> Plan:
    if not present:
        return Plan.nothing(f"{sysctl_file(key)} is already absent")
    return Plan.run(("rm", "-f", "--", sysctl_file(key)), reason=f"stop persisting {key}")


# --- the boot step and its units ------------------------------------------------------


def restorer_script() -> str:
    """The boot step's content: restore.py itself, so what runs at boot is what is tested."""
    return Path(restore.__file__).read_text()


RESTORE_UNIT_TEXT = """\
# glidepath: restores at boot what glidepath applied (rules, routes, marks, tunnels).
# Installed by glidepath; rewritten on apply.
[Unit]
Description=glidepath boot restore (/etc/glidepath/boot.d)
After=network-online.target systemd-sysctl.service
Wants=network-online.target
Before=libvirtd.service libvirt-guests.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/bin/python3 /usr/local/lib/glidepath/boot-restore restore

[Install]
WantedBy=multi-user.target
"""

KEEPER_UNIT_TEXT = """\
# glidepath: one tunnel's keeper (ssh -w), its parameters in
# /etc/glidepath/boot.d/keeper-%i.json. Installed by glidepath; rewritten on apply.
[Unit]
Description=glidepath tunnel keeper %i
After=network-online.target glidepath-restore.service
Wants=network-online.target

[Service]
ExecStart=/usr/bin/python3 /usr/local/lib/glidepath/boot-restore keeper %i
Restart=always
RestartSec=1
KillMode=control-group

[Install]
WantedBy=multi-user.target
"""


def keeper_unit(name: str) -> str:
    """The unit of the keeper whose record is `keeper-<name>`."""
    return f"glidepath-tunnel@{name}.service"


def plan_restorer(
    installed: str | None, systemd: bool, restore_unit: str | None, keeper_unit_text: str | None
) -> Plan:
    """Install the boot step (and on systemd hosts its units, the restore unit enabled),
    wherever the host's copy is missing or differs."""
    writes = []
    if installed != restorer_script():
        writes.append(FileWrite(RESTORER, restorer_script(), "0755"))
    then: tuple[tuple[str, ...], ...] = ()
    if systemd:
        if restore_unit != RESTORE_UNIT_TEXT:
            writes.append(FileWrite(RESTORE_UNIT, RESTORE_UNIT_TEXT))
            then = (
                ("systemctl", "daemon-reload"),
                ("systemctl", "enable", "glidepath-restore.service"),
            )
        if keeper_unit_text != KEEPER_UNIT_TEXT:
            writes.append(FileWrite(KEEPER_UNIT, KEEPER_UNIT_TEXT))
            then = (("systemctl", "daemon-reload"), *then[1:])
    if not writes:
        return Plan.nothing(f"{RESTORER} is up to date")
    return Plan.write(*writes, then=then, reason=f"install the boot step {RESTORER}")
