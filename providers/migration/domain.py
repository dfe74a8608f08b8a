"""A VM placement's libvirt domain, as pure functions: its XML (also the destination XML
of a migration), and the names that must agree on every host (MAC, UUID, console log)."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any, get_args
from xml.sax.saxutils import escape, quoteattr

from providers.schema.vif_route_script import DEFAULT_PATH as VIF_SCRIPT
from providers.schema.vm_placement import DomainType, disk_kind
from providers.validate import CPU_MODES


@dataclass(frozen=True)
class Disk:
    path: str
    size_mib: int
    target: str  # vda, vdb, ...


@dataclass(frozen=True)
class DomainSpec:
    """What the stack says about one VM; `from_props` reads a resource's inputs."""

    name: str
    memory_mib: int
    vcpus: int
    vif: str
    mac: str
    disks: tuple[Disk, ...]
    domain_type: str  # "kvm" where /dev/kvm runs the guest, "qemu" for TCG
    cpu_model: str | None = None
    kernel: str = ""
    initrd: str = ""
    cmdline: str = ""
    vif_script: str = VIF_SCRIPT

    @staticmethod
    def from_props(props: dict[str, Any]) -> DomainSpec:
        """`props`: a VmPlacement's inputs, as its `check` made them (every default in)."""
        boot = props["boot"]
        return DomainSpec(
            name=props["name"],
            memory_mib=int(props["memory_mib"]),
            vcpus=int(props["vcpus"]),
            vif=props["vif"],
            mac=props.get("mac") or mac_for(props["name"]),
            disks=tuple(
                Disk(d["path"], int(d["size_mib"]), f"vd{chr(ord('a') + i)}")
                for i, d in enumerate(props["disks"])
            ),
            domain_type=props["domain_type"],
            cpu_model=props.get("cpu_model"),
            kernel=boot.get("kernel", ""),
            initrd=boot.get("initrd", ""),
            cmdline=boot.get("cmdline", ""),
        )


def mac_for(name: str) -> str:
    """A stable locally administered MAC from the VM name (52:54:00 is QEMU's prefix).

    Stable across hosts on purpose: the tap's MAC follows from it (fe:54:...), so the
    guest's neighbour entry for its gateway stays valid after a move.
    """
    digest = hashlib.sha256(name.encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


# Domain UUIDs derive from the VM name, so every host and every definition agree (libvirt
# refuses a migration whose destination XML names another UUID).
_UUID_NAMESPACE = uuid.UUID("8a1f3c2e-5b7d-4e0a-9c61-2f4d8b9e7a10")


def domain_uuid(name: str) -> str:
    return str(uuid.uuid5(_UUID_NAMESPACE, name))


def console_log_path(name: str) -> str:
    """Where a domain's serial console goes, on each host."""
    return f"/var/log/libvirt/qemu/{name}-console.log"


def domain_xml(spec: DomainSpec, disk_slices: dict[str, int] | None = None) -> str:
    """The domain XML. `disk_slices` maps a disk path to the bytes of its guest-visible
    size where the file or volume underneath is bigger (a migration onto a grown target)."""
    if spec.domain_type not in get_args(DomainType):
        raise ValueError(
            f"domain type must be one of {get_args(DomainType)}, not {spec.domain_type!r}"
        )
    q = quoteattr
    slices = disk_slices or {}
    boot = ""
    if spec.kernel:
        boot = f"\n    <kernel>{escape(spec.kernel)}</kernel>"
        if spec.initrd:
            boot += f"\n    <initrd>{escape(spec.initrd)}</initrd>"
        if spec.cmdline:
            boot += f"\n    <cmdline>{escape(spec.cmdline)}</cmdline>"
    else:
        boot = "\n    <boot dev='hd'/>"
    disk_xml = "\n".join(_disk_xml(disk, slices.get(disk.path)) for disk in spec.disks)
    cpu = ""
    if spec.cpu_model in CPU_MODES:
        cpu = f"\n  <cpu mode={q(spec.cpu_model)}/>"
    elif spec.cpu_model:
        # fallback='forbid': a host without the model fails to start it, never a lesser CPU.
        cpu = (
            "\n  <cpu mode='custom' match='exact'>"
            f"<model fallback='forbid'>{escape(spec.cpu_model)}</model></cpu>"
        )
    return f"""<domain type={q(spec.domain_type)}>
  <name>{escape(spec.name)}</name>
  <uuid>{domain_uuid(spec.name)}</uuid>
  <memory unit='MiB'>{spec.memory_mib}</memory>
  <vcpu>{spec.vcpus}</vcpu>{cpu}
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>{boot}
  </os>
  <features><acpi/></features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
{disk_xml}
    <interface type='ethernet'>
      <mac address={q(spec.mac)}/>
      <script path={q(spec.vif_script)}/>
      <target dev={q(spec.vif)}/>
      <model type='virtio'/>
    </interface>
    <serial type='file'>
      <source path={q(console_log_path(spec.name))} append='on'/>
      <target port='0'/>
    </serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def _disk_xml(disk: Disk, slice_bytes: int | None) -> str:
    """One <disk>: a raw file, or a block device where its path is under /dev/."""
    if disk_kind(disk.path) == "block":
        kind, attribute = "block", "dev"
        # cache='none' opens the device O_DIRECT: the guest caches its own disk, the host's
        # page cache would only hold a second copy; io='native' (Linux AIO) needs it
        # (QEMU refuses aio=native without cache.direct). libvirt's usual pair for volumes.
        driver = "<driver name='qemu' type='raw' cache='none' io='native'/>"
    else:
        kind, attribute = "file", "file"
        driver = "<driver name='qemu' type='raw'/>"
    source = f"<source {attribute}={quoteattr(disk.path)}/>"
    if slice_bytes is not None:
        source = (
            f"<source {attribute}={quoteattr(disk.path)}><slices><slice type='storage' "
            f"offset='0' size='{slice_bytes}'/></slices></source>"
        )
    return (
        f"    <disk type='{kind}' device='disk'>\n"
        f"      {driver}\n"
        f"      {source}\n"
        f"      <target dev={quoteattr(disk.target)} bus='virtio'/>\n"
        "    </disk>"
    )
