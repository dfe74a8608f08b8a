"""The libvirt migration job of a move: how it is asked for (flags and parameters of
`migrate3`), and putting the VM back on its source when it failed."""

from __future__ import annotations

from typing import Any

from providers.migration import live_xml
from providers.migration.domain import DomainSpec, domain_xml
from providers.migration.path import Path, uri
from providers.schema.vm_placement import Migration


def flags(settings: Migration) -> int:
    """`settings`: the VmPlacement's `migration` input."""
    import libvirt

    value = (
        libvirt.VIR_MIGRATE_LIVE  # the guest keeps running while memory is copied
        | libvirt.VIR_MIGRATE_NON_SHARED_DISK  # copy whole disks (no shared storage)
        | libvirt.VIR_MIGRATE_PERSIST_DEST  # define it on the target, not just run it
        | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE  # and forget it on the source: one owner
    )
    if settings.auto_converge:
        value |= libvirt.VIR_MIGRATE_AUTO_CONVERGE  # throttle a guest that dirties faster
    if settings.postcopy != "never":
        # Allows the switch to post-copy (the monitor asks for it: migrateStartPostCopy);
        # without it the job is plain pre-copy. libvirt 9 / QEMU 7.2 accept it with the
        # NBD disk copy: the memory stream starts once every mirror is in sync.
        value |= libvirt.VIR_MIGRATE_POSTCOPY
    return value


def resume_flags(settings: Migration) -> int:
    """The flags that resume a post-copy whose stream broke: the move's own, plus
    POSTCOPY_RESUME (libvirt >= 8.5), which reconnects the two halves of the VM."""
    import libvirt

    return flags(settings) | libvirt.VIR_MIGRATE_POSTCOPY | libvirt.VIR_MIGRATE_POSTCOPY_RESUME


def destination(
    spec: DomainSpec | None, live: str, slices: dict[str, int]
) -> tuple[str, list[str]]:
    """-> (the destination XML, the disks to copy by target name). A generated VM's is
    its spec's XML; an adopted VM's (`spec` None) its own live migratable XML, `live`.
    Either with `slices` for bigger target disks."""
    if spec is None:
        return live_xml.with_slices(live, slices), [d.target for d in live_xml.disks(live)]
    return domain_xml(spec, slices), [d.target for d in spec.disks]


def params(
    destination_xml: str, disk_targets: list[str], settings: Migration, path: Path
) -> dict[str, Any]:
    """The destination XML, the disks to copy, the bandwidth limit if `settings` sets one,
    and where the streams go (`path`)."""
    import libvirt

    value: dict[str, Any] = {
        libvirt.VIR_MIGRATE_PARAM_DEST_XML: destination_xml,
        libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS: disk_targets,
    }
    if path.address is not None:
        # The target's QEMU listens for memory (URI) and its NBD server for the disks
        # (DISKS_URI) on the tunnel address alone, and the source connects there: nothing
        # of the VM crosses the uplinks outside SSH, and nothing listens on them.
        value[libvirt.VIR_MIGRATE_PARAM_URI] = uri(path.address)
        value[libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS] = path.address
        value[libvirt.VIR_MIGRATE_PARAM_DISKS_URI] = uri(path.address)
    if settings.bandwidth_mib_s > 0:
        value[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = settings.bandwidth_mib_s
    if settings.postcopy_bandwidth_mib_s > 0:
        value[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY] = settings.postcopy_bandwidth_mib_s
    return value


def split(source_conn: Any, target_conn: Any, name: str) -> str | None:
    """Whether the VM's memory is split between the hosts by a post-copy move: "active"
    (the copy runs), "failed" (its stream broke: resume it), None (not in post-copy)."""
    import libvirt

    from providers.migration.policy import postcopy_state

    found = []
    for conn in (source_conn, target_conn):
        try:
            found.append(postcopy_state(*conn.lookupByName(name).state()))
        except libvirt.libvirtError:
            continue
    if "failed" in found:
        return "failed"
    return "active" if "active" in found else None


SPLIT = (
    "Its memory is split between {source} and {target} (post-copy): it is paused or "
    "stalled until the copy resumes. Restore the link between them and run `pulumi up`: "
    "it resumes the copy (VIR_MIGRATE_POSTCOPY_RESUME). Never resume it on {source} by "
    "hand: the VM has run on {target} since the switch (docs/recovery.md)."
)


def recover(
    source_conn: Any, target_conn: Any, name: str, source: str, target: str
) -> tuple[str, str]:
    """After a failed move: the VM must run on exactly one host. -> (that host, what we
    found/did; the caller routes the VM's address to that host).

    The target first: where libvirt's Finish already resumed the VM there, the move took
    place whatever error came back (a connection lost after it), and resuming the paused
    copy on the source would run the VM twice on one disk's two copies."""
    import libvirt

    if split(source_conn, target_conn, name):
        # From the post-copy switch on, the source's copy of the VM is stale: resuming
        # it would run the VM twice, on two diverged disks. The target keeps its route.
        return target, SPLIT.format(source=source, target=target)
    try:
        arrived = target_conn.lookupByName(name)
        if arrived.isActive() and arrived.state()[0] == libvirt.VIR_DOMAIN_RUNNING:
            return target, (
                f"The VM runs on {target}: the move took place despite the error; its copy on "
                f"{source} was left as it is. Run `pulumi refresh`, then `pulumi up`."
            )
    except libvirt.libvirtError:
        pass  # not there (libvirt's Finish removed the incoming one), or unreadable
    try:
        dom = source_conn.lookupByName(name)
    except libvirt.libvirtError:
        return source, (
            f"The VM is no longer defined on {source}: check the target, then `pulumi refresh`."
        )
    state, _reason = dom.state()
    if state == libvirt.VIR_DOMAIN_PAUSED:
        dom.resume()
        return source, f"The VM was paused on {source} and has been resumed there."
    if dom.isActive():
        return source, f"The VM still runs on {source}."
    dom.create()
    return source, f"The VM had stopped on {source} and has been started there again."
