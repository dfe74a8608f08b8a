"""Pre-flight: what a preview says about a move, and read-only checks that it can work
on the target (versions, memory, no namesake domain, CPU model, disks: each there or
creatable, big enough, used by nothing else). A failed check fails the preview, and
again the move, before anything changed."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any, NamedTuple

from providers.migration import MIB, log
from providers.migration.disks import disk_checks, domain_users, plan_target_disks
from providers.transport import SshSession


class PreflightError(RuntimeError):
    """A move cannot start; the message lists what to fix. Nothing was changed."""


class Side(NamedTuple):
    """One end of a move, as pre-flight reads it."""

    name: str
    conn: Any  # its libvirt connection
    ssh: SshSession


def describe_move(
    name: str,
    source: str,
    target: str,
    disk_mib: int | None,
    memory_mib: int | None,
    max_downtime_ms: int,
    postcopy: str = "never",
) -> str:
    """The line a preview prints for a move (DESIGN.md §4); sizes None: an adopted VM's
    own (its definition, not the stack, says them)."""
    what = (
        f"copy {disk_mib} MiB disk + {memory_mib} MiB RAM"
        if disk_mib is not None and memory_mib is not None
        else "copy its own disks and RAM (adopted)"
    )
    line = f"{name}: live-migrate {source} -> {target}: {what}, max downtime {max_downtime_ms} ms"
    if postcopy != "never":
        when = "after the first memory pass" if postcopy == "after_first_pass" else "if stuck"
        line += f", post-copy {when} (postcopy: {postcopy})"
    return line


def check(
    news: dict[str, Any], source: Side, target: Side, *, announce: bool
) -> tuple[list[str], dict[str, int]]:
    """-> (disks to create on the target, slices), or PreflightError with every problem.
    `announce`: say so when they pass."""
    import libvirt

    problems: list[str] = []
    source_conn, target_conn = source.conn, target.conn
    try:
        dom = source_conn.lookupByName(news["name"])
    except libvirt.libvirtError as err:
        raise PreflightError(
            f"{news['name']}: pre-flight: not defined on {source.name}; run `pulumi refresh`"
        ) from err
    if target_conn.getLibVersion() < source_conn.getLibVersion():
        problems.append(
            f"libvirt on {target.name} ({version(target_conn.getLibVersion())}) is older "
            f"than on {source.name} ({version(source_conn.getLibVersion())})"
        )
    if target_conn.getVersion() < source_conn.getVersion():
        problems.append(
            f"QEMU on {target.name} ({version(target_conn.getVersion())}) is older than on "
            f"{source.name} ({version(source_conn.getVersion())})"
        )
    # The domain's own memory and type, not the stack's: an adopted VM has its own.
    memory_mib = dom.maxMemory() // 1024
    free_mib = target_conn.getFreeMemory() // MIB
    if free_mib < memory_mib + 64:
        problems.append(f"{target.name} has {free_mib} MiB free, {memory_mib} MiB (+64) needed")
    try:
        target_conn.lookupByName(news["name"])
        problems.append(f"a domain named {news['name']} is already defined on {target.name}")
    except libvirt.libvirtError:
        pass
    live = dom.XMLDesc(0)
    cpu = cpu_xml(live)
    if cpu is not None:
        # Against what the target's hypervisor offers for this domain type (TCG can
        # emulate models the host CPU lacks; KVM cannot).
        verdict = target_conn.compareHypervisorCPU(None, "x86_64", None, domain_type(live), cpu, 0)
        if verdict == libvirt.VIR_CPU_COMPARE_INCOMPATIBLE:
            problems.append(f"{target.name}'s CPU cannot run the VM's CPU model")
    # A disk another domain on the target opens is taken, whatever it is.
    users = domain_users(target_conn, news["name"])
    create, slices, disk_problems = plan_target_disks(
        disk_checks(source.ssh, target.ssh, news["disks"], users),
        source=source.name,
        target=target.name,
    )
    problems += disk_problems
    if problems:
        raise PreflightError(
            f"{news['name']}: cannot move {source.name} -> {target.name}:\n  - "
            + "\n  - ".join(problems)
        )
    if not announce:
        return create, slices
    log(
        f"{news['name']}: pre-flight ok on {target.name} (libvirt "
        f"{version(target_conn.getLibVersion())}, QEMU {version(target_conn.getVersion())}, "
        f"{free_mib} MiB free"
        + (f", will create {', '.join(create)}" if create else "")
        + (f", bigger target disk kept at source size: {', '.join(slices)}" if slices else "")
        + ")"
    )
    return create, slices


def version(number: int) -> str:
    """libvirt's version number (major * 1e6 + minor * 1e3 + release) as people write it."""
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


def domain_type(domain_xml_text: str) -> str:
    """kvm or qemu (TCG), as the domain itself says."""
    return ET.fromstring(domain_xml_text).get("type", "kvm")  # noqa: S314 (libvirt's XML)


def cpu_xml(domain_xml_text: str) -> str | None:
    """The domain's <cpu> element when it pins a model, for compareHypervisorCPU."""
    cpu = ET.fromstring(domain_xml_text).find("cpu")  # noqa: S314 (libvirt's own XML)
    if cpu is None or cpu.find("model") is None:
        return None  # no pinned model (TCG default): nothing to compare
    return ET.tostring(cpu, encoding="unicode")
