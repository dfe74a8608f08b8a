"""VmPlacement: a libvirt domain, defined and running on the host the stack names.

Changing `host` is an update, never a replace: the update live-migrates the VM with its
disks (LIVE | NON_SHARED_DISK | PERSIST_DEST | UNDEFINE_SOURCE). Preview names the move
and runs read-only pre-flight checks on the target; a failed check fails the preview.
The work is in providers/migration/, one job per module; this file wires it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, UpdateResult

from providers import libvirt_bridge, transport, validate
from providers.base import HostProvider, endpoint_of
from providers.migration import MIB, disks, job, live_xml, path, preflight, removal
from providers.migration import log as _log
from providers.migration.domain import DomainSpec, domain_xml
from providers.migration.handover import End, RouteHandover
from providers.migration.monitor import Monitor
from providers.migration.preflight import PreflightError, describe_move
from providers.plans import handover
from providers.schema.vm_placement import (
    Boot,
    Disk,
    DomainType,
    Migration,
    OnRemove,
    VmPlacementArgs,
    disk_kind,
)
from providers.transport import Endpoint

SPEC_FIELDS = ("memory_mib", "vcpus", "vif", "disks", "boot", "domain_type", "cpu_model", "mac")
#: What the delete does: stored for it to read, no change on the host.
REMOVAL_FIELDS = ("on_remove", "shutdown_timeout_s", "delete_disks")
#: A state from before these fields releases the VM at delete, as their defaults do.
REMOVAL_DEFAULTS = {
    key: VmPlacementArgs.model_fields[key].default for key in ("on_remove", "shutdown_timeout_s")
}


# One provider process serves every placement of an `up`: a move takes a slot here.
_slots_lock = threading.Lock()
_slots: dict[int, threading.BoundedSemaphore] = {}


def _move_slots(at_once: int) -> threading.BoundedSemaphore:
    with _slots_lock:
        return _slots.setdefault(at_once, threading.BoundedSemaphore(at_once))


def _autostart(dom: Any, name: str, host: str) -> None:
    """libvirt starts the domain when its host boots (libvirtd starts autostart domains);
    a migration does not carry the flag, so it is set on the host the VM runs on."""
    if not dom.autostart():
        dom.setAutostart(1)
        _log(f"{name}: set to autostart on {host}")


class MigrationError(RuntimeError):
    """A move failed; the VM still runs on the source (the message says so)."""


@dataclass
class Placement:
    """Where a domain was found: host name and whether it runs."""

    host: str
    running: bool
    domain: Any


class VmPlacementProvider(HostProvider):
    identity = ("name",)
    schema = VmPlacementArgs

    # --- diff ------------------------------------------------------------------------

    def diffed_fields(self, news: dict[str, Any]) -> list[str]:
        # Not `cutover_router`, `tunnel_addresses` nor `moves_at_once`: where the network's
        # cutover switches, which links exist and how moves are scheduled say nothing about
        # the VM; they only shape a move.
        return ["name", "host", "migration", "adopt", *REMOVAL_FIELDS, *SPEC_FIELDS]

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        # A state from before these fields: its delete releases the VM (their defaults),
        # so they are no change to store.
        olds = {**REMOVAL_DEFAULTS, **olds}
        result = super().diff(id_, olds, news)
        old_host, new_host = olds.get("host") or {}, news.get("host")
        if (
            result.changes
            and isinstance(new_host, dict)
            and old_host.get("name") != new_host.get("name")
            and not validate.is_unknown(new_host)
        ):
            _log(
                describe_move(
                    news["name"],
                    old_host.get("name", "?"),
                    new_host["name"],
                    # Not canonicalised here: the engine hands numbers over as floats.
                    None if news.get("adopt") else sum(int(d["size_mib"]) for d in news["disks"]),
                    None if news.get("adopt") else int(news["memory_mib"]),
                    int(news["migration"]["max_downtime_ms"]),
                    str(news["migration"].get("postcopy", "never")),
                )
            )
            if self._split_on(olds):
                # Its half on the target is defined: pre-flight would refuse the move.
                _log(
                    f"{news['name']}: its post-copy move to {new_host['name']} broke off (its "
                    "memory is split between the hosts): up resumes it"
                )
            else:
                # Read-only pre-flight at preview: a move that cannot work fails here.
                self.preflight(olds, news)
        if olds.get("running") is False and not result.changes:
            # Found stopped (refresh read it so): the stack wants it running; `up` starts it.
            _log(f"{news['name']}: not running on {olds['host']['name']}: up starts it")
            return DiffResult(changes=True, replaces=[], delete_before_replace=False)
        if olds.get("autostart") is False and not result.changes:
            # Refresh found it not set to start at its host's boot: `up` sets it.
            _log(f"{news['name']}: not set to autostart on {olds['host']['name']}: up sets it")
            return DiffResult(changes=True, replaces=[], delete_before_replace=False)
        return result

    # --- host access ---------------------------------------------------------------------

    def _libvirt(self, endpoint: Endpoint) -> Any:
        if self._credentials is None:
            raise transport.TransportError(
                self._credentials_error or "glidepath:ssh is not configured for this stack"
            )
        return libvirt_bridge.connection(endpoint, self._credentials)

    def _split_on(self, props: dict[str, Any]) -> bool:
        """Whether the VM on `props`' host is half of a post-copy move."""
        import libvirt

        try:
            return _split(self._libvirt(endpoint_of(props)).lookupByName(props["name"]))
        except (libvirt.libvirtError, transport.TransportError):
            return False

    def _find(self, props: dict[str, Any]) -> Placement | None:
        """Where the domain is: the stored host first, then every host of the fleet."""
        import libvirt

        fleet: dict[str, dict[str, Any]] = props["fleet"]
        order = [props["host"]["name"], *[h for h in fleet if h != props["host"]["name"]]]
        found: list[Placement] = []
        for host in order:
            endpoint = endpoint_of({"host": fleet.get(host, props["host"])})
            try:
                dom = self._libvirt(endpoint).lookupByName(props["name"])
            except libvirt.libvirtError:
                continue
            found.append(Placement(host, bool(dom.isActive()), dom))
        running = [p for p in found if p.running]
        if len(running) > 1 and any(_split(p.domain) for p in running):
            # A post-copy move whose stream broke: active on both hosts, its memory split.
            # The stored host is the move's source (the failed `up` kept it): `up` resumes.
            return running[0]
        if len(running) > 1:
            hosts = ", ".join(p.host for p in running)
            raise RuntimeError(f"{props['name']} runs on more than one host ({hosts}): fix by hand")
        candidates = running or found
        return candidates[0] if candidates else None

    # --- create / read / delete --------------------------------------------------------

    def create(self, props: dict[str, Any]) -> CreateResult:
        props = self.canonical(props)
        name = props["name"]
        existing = self._find(props)
        if existing is not None and existing.host != props["host"]["name"] and existing.running:
            raise RuntimeError(
                f"{name} already runs on {existing.host}; set host: {existing.host} in the stack "
                "to adopt it there"
            )
        endpoint = endpoint_of(props)
        conn = self._libvirt(endpoint)
        if props["adopt"]:
            dom = self._adopt(props, existing)
        else:
            disks.ensure_disks(self.session(props), props["disks"], disks.domain_users(conn, name))
            dom = conn.defineXML(domain_xml(DomainSpec.from_props(props)))
        _autostart(dom, name, endpoint.name)
        if not dom.isActive():
            self._start(props, dom)
            _log(f"{name}: started on {endpoint.name}")
        return CreateResult(name, self._outputs(props, dom, None))

    def _adopt(self, props: dict[str, Any], existing: Placement | None) -> Any:
        """Take over a domain defined by hand, as it is: nothing of it is rewritten."""
        name, host = props["name"], props["host"]["name"]
        if existing is None or existing.host != host:
            raise RuntimeError(
                f"{name}: adopt: no domain named {name} on {host} (`virsh list --all` there); "
                "define it there first, or remove `adopt` to let glidepath define it"
            )
        taps = live_xml.interface_targets(existing.domain.XMLDesc(0))
        if props["vif"] not in taps:
            raise RuntimeError(
                f"{name}: adopt: its interfaces are {', '.join(taps) or 'none'}, not "
                f"{props['vif']} (the stack's vif): its routes follow the tap's name. Set "
                "vif to its tap, or give its interface that target dev"
            )
        _log(
            f"{name}: adopted on {host} as it is ({'running' if existing.running else 'stopped'}); "
            "its definition stays its own"
        )
        return existing.domain

    def _start(self, props: dict[str, Any], dom: Any) -> None:
        # A hold left by a killed move would keep the VM's route off its tap.
        self.session(props).run(handover.release(props["vif"]))
        dom.create()

    def _outputs(
        self, props: dict[str, Any], dom: Any, last: dict[str, Any] | None
    ) -> dict[str, Any]:
        return {
            **props,
            "uuid": dom.UUIDString(),
            "running": bool(dom.isActive()),
            "autostart": bool(dom.autostart()),
            "last_migration": last,
        }

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        props = self.canonical(props)
        placement = self._find(props)
        if placement is None:
            return ReadResult("", {})
        host = props["fleet"].get(placement.host, props["host"])
        return ReadResult(
            id_,
            {
                **props,
                "host": host,
                "running": placement.running,
                "autostart": bool(placement.domain.autostart()),
                "uuid": placement.domain.UUIDString(),
            },
        )

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        props = self.canonical(props)
        placement = self._find(props)
        if placement is None:
            return
        name, host = props["name"], placement.host
        if props["on_remove"] != "shutdown":
            # The default: the VM runs on, untouched (docs/moving.md, "Removing a VM").
            _log(removal.released(name, host, placement.running, bool(props["delete_disks"])))
            return
        if placement.running:
            timeout_s = int(props["shutdown_timeout_s"])
            seconds = removal.shut_down(placement.domain, name, host, timeout_s)
            _log(f"{name}: shut down on {host} in {seconds:.1f} s (ACPI)")
        removal.undefine(placement.domain)
        if props["delete_disks"]:
            session = self.session({"host": props["fleet"].get(host, props["host"])})
            # Files only: glidepath never removes a volume (the schema keeps them out).
            disks.remove_disks(
                session, [d for d in props["disks"] if disk_kind(d["path"]) == "file"]
            )
            _log(f"{name}: undefined and its disks removed on {host}")
        else:
            _log(f"{name}: undefined on {host} (disks kept)")

    # --- update: spec changes and live migration -------------------------------------

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        olds, news = self.canonical(olds), self.canonical(news)
        placement = self._find(olds)
        if placement is None:
            raise RuntimeError(f"{news['name']} is defined on no host; `pulumi refresh` then `up`")
        last = olds.get("last_migration")
        target = news["host"]["name"]
        if placement.host != target:
            last = self.migrate(olds, news, placement)
        conn = self._libvirt(endpoint_of(news))
        dom = conn.lookupByName(news["name"])
        if not news["adopt"] and any(olds.get(k) != news.get(k) for k in SPEC_FIELDS):
            conn.defineXML(domain_xml(DomainSpec.from_props(news)))  # at the next boot
            _log(f"{news['name']}: definition updated; memory/CPU/boot changes apply at next boot")
        if any(olds.get(k) != news.get(k) for k in REMOVAL_FIELDS):
            _log(f"{news['name']}: {removal.describe(news)}")
        _autostart(dom, news["name"], target)
        if placement.host != target:
            self._no_autostart(olds, news["name"], placement.host)
        if not dom.isActive():
            self._start(news, dom)
            _log(f"{news['name']}: started on {target}")
        return UpdateResult(self._outputs(news, dom, last))

    def _no_autostart(self, olds: dict[str, Any], name: str, host: str) -> None:
        """The host a VM left never starts it at its boot: the move undefined it there
        (UNDEFINE_SOURCE); a definition left behind all the same is kept from autostart."""
        import libvirt

        endpoint = endpoint_of({"host": olds["fleet"].get(host, olds["host"])})
        try:
            left = self._libvirt(endpoint).lookupByName(name)
        except libvirt.libvirtError:
            return  # undefined there, as the move does
        if not left.isActive() and left.autostart():
            left.setAutostart(0)
            _log(f"{name}: autostart cleared on {host}, which it left")

    def preflight(
        self, olds: dict[str, Any], news: dict[str, Any], *, announce: bool = True
    ) -> tuple[list[str], dict[str, int], path.Path]:
        """Read-only checks that a move can work. -> (disks to create, slices, the path of
        its streams). `announce`: say so when they pass (the preview's diff does; the move
        repeats them silently just before it starts, and then also checks that the tunnel
        it goes through is up: at preview a link may be new in the same run)."""
        source_name = (olds.get("host") or {}).get("name", "?")
        target = endpoint_of(news)
        try:
            route = path.choose(
                news["migration"]["transport"], news["tunnel_addresses"], source_name, target.name
            )
        except path.NoTunnel as err:
            raise PreflightError(
                f"{news['name']}: cannot move {source_name} -> {target.name}: {err}"
            ) from None
        try:
            target_conn = self._libvirt(target)
            source_conn = self._libvirt(endpoint_of(olds))
        except transport.TransportError as err:
            raise PreflightError(f"{news['name']}: pre-flight: {err}") from err
        source_ssh, target_ssh = self.session(olds), self.session(news)
        create, slices = preflight.check(
            {**news, "disks": self._disks(olds, news)},
            preflight.Side(source_name, source_conn, source_ssh),
            preflight.Side(target.name, target_conn, target_ssh),
            announce=announce,
        )
        if announce:
            _log(f"{news['name']}: {route.describe(source_name, target.name)}")
        else:
            problems = path.check(route, source_ssh, target_ssh, source_name, target.name)
            if problems:
                raise PreflightError(
                    f"{news['name']}: cannot move {source_name} -> {target.name}:\n  - "
                    + "\n  - ".join(problems)
                )
        return create, slices, route

    def migrate(
        self, olds: dict[str, Any], news: dict[str, Any], placement: Placement
    ) -> dict[str, Any]:
        """One move, once the stack's schedule (`moves_at_once`) lets it start."""
        turn = _move_slots(int(news["moves_at_once"]))
        if not turn.acquire(blocking=False):
            _log(f"{news['name']}: waiting for its turn (moves.at_once: {news['moves_at_once']})")
            turn.acquire()
        try:
            return self._migrate(olds, news, placement)
        finally:
            turn.release()

    def _migrate(
        self, olds: dict[str, Any], news: dict[str, Any], placement: Placement
    ) -> dict[str, Any]:
        import libvirt

        name, source, target = news["name"], placement.host, news["host"]["name"]
        source_props = {**olds, "host": olds["fleet"].get(source, olds["host"])}
        if _split(placement.domain):
            return self._resume(source_props, news, placement)
        create, slices, route = self.preflight(source_props, news, announce=False)
        target_ssh = self.session(news)
        # lvcreate rounds up to whole extents: a volume that came out bigger gets a slice too.
        slices = {
            **slices,
            **disks.create_target_disks(
                self.session(source_props), target_ssh, create, self._disks(source_props, news)
            ),
        }
        settings = Migration.model_validate(news["migration"])
        max_downtime = settings.max_downtime_ms
        source_conn = self._libvirt(endpoint_of(source_props))
        target_conn = self._libvirt(endpoint_of(news))
        dom = source_conn.lookupByName(name)
        spec = None if news["adopt"] else DomainSpec.from_props(news)
        live = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE) if spec is None else ""
        destination_xml, disk_targets = job.destination(spec, live, slices)
        params = job.params(destination_xml, disk_targets, settings, route)
        flags = job.flags(settings)
        dom.migrateSetMaxDowntime(max_downtime, 0)
        timeout_s = float(settings.timeout_s)
        routes = RouteHandover(
            name,
            End(source, self.session(source_props), olds["ip"], olds["vif"]),
            End(target, target_ssh, news["ip"], news["vif"]),
        )
        routes.hold(timeout_s)
        _log(f"{name}: migrating {source} -> {target}, {route.describe(source, target)}")
        moved = False
        try:
            routes.watch(source_conn, dom)
            result = Monitor(name, dom, target_conn).run(
                params,
                flags,
                max_downtime_ms=max_downtime,
                timeout_s=timeout_s,
                after_start=lambda: self._warm_up_router(news),
                postcopy=settings.postcopy,
            )
            if result.failure is not None:
                runs_on, where = self._recover(source_props, news, name)
                moved = runs_on == target  # its route follows it (finally, below)
                raise MigrationError(
                    f"{name}: migration {source} -> {target} failed after "
                    f"{result.seconds:.1f} s: {result.failure}. {where}"
                ) from result.monitor_error
            last = result.record(source, target)
            _log(
                f"{name}: moved {last['from']} -> {last['to']} in {last['seconds']:.1f} s, "
                f"downtime {last['downtime_ms']} ms (QEMU), {last['bytes'] // MIB} MiB copied"
            )
            moved = True
            return last
        finally:
            # After job.recover: a VM back on its source gets its route back there.
            routes.finish(moved)

    def _resume(
        self, source_props: dict[str, Any], news: dict[str, Any], placement: Placement
    ) -> dict[str, Any]:
        """Finish a post-copy move whose stream broke (an earlier `up`): the same
        destination, disks and path, with VIR_MIGRATE_POSTCOPY_RESUME. The source's copy
        is never resumed: the VM has run on the target since the switch."""
        import libvirt

        name, source, target = news["name"], placement.host, news["host"]["name"]
        state = job.split(
            self._libvirt(endpoint_of(source_props)), self._libvirt(endpoint_of(news)), name
        )
        if state != "failed":
            raise MigrationError(
                f"{name}: a post-copy move {source} -> {target} is still running (its memory "
                "is split between the hosts): wait for it to end, then `pulumi refresh`"
            )
        route = path.choose(
            news["migration"]["transport"], news["tunnel_addresses"], source, target
        )
        problems = path.check(route, self.session(source_props), self.session(news), source, target)
        if problems:
            raise MigrationError(
                f"{name}: cannot resume the post-copy move {source} -> {target} yet:\n  - "
                + "\n  - ".join(problems)
                + "\n"
                + job.SPLIT.format(source=source, target=target)
            )
        settings = Migration.model_validate(news["migration"])
        source_conn = self._libvirt(endpoint_of(source_props))
        target_conn = self._libvirt(endpoint_of(news))
        try:
            target_conn.lookupByName(name)
        except libvirt.libvirtError:
            raise MigrationError(
                f"{name}: its memory is split by a post-copy move to another host than "
                f"{target}: set host to the one where `virsh domstate --reason {name}` says "
                "post-copy, and `pulumi up` again"
            ) from None
        dom = source_conn.lookupByName(name)
        spec = None if news["adopt"] else DomainSpec.from_props(news)
        live = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE) if spec is None else ""
        destination_xml, disk_targets = job.destination(spec, live, {})
        params = job.params(destination_xml, disk_targets, settings, route)
        # The target's half was defined by the original move's Prepare, with its
        # destination XML (and slices): the resume reconnects the streams, no redefinition.
        params.pop(libvirt.VIR_MIGRATE_PARAM_DEST_XML)
        _log(
            f"{name}: resuming the post-copy move {source} -> {target}, "
            f"{route.describe(source, target)}"
        )
        result = Monitor(name, dom, target_conn).run(
            params,
            job.resume_flags(settings),
            max_downtime_ms=settings.max_downtime_ms,
            timeout_s=float(settings.timeout_s),
            resuming=True,
        )
        if result.failure is not None:
            raise MigrationError(
                f"{name}: resuming the post-copy move {source} -> {target} failed after "
                f"{result.seconds:.1f} s: {result.failure}. "
                + job.SPLIT.format(source=source, target=target)
            ) from result.monitor_error
        # Its route went to the target at the switch; make sure of it.
        self.session(news).run(handover.route_here(news["ip"], news["vif"]))
        last = result.record(source, target)
        _log(
            f"{name}: moved {source} -> {target}: the post-copy resumed and completed in "
            f"{result.seconds:.1f} s"
        )
        return last

    def _recover(
        self, source_props: dict[str, Any], news: dict[str, Any], name: str
    ) -> tuple[str, str]:
        """job.recover on connections that work now: the failure may have been one of them
        (`_libvirt` opens a new one where the old is closed)."""
        source, target = source_props["host"]["name"], news["host"]["name"]
        try:
            source_conn = self._libvirt(endpoint_of(source_props))
            target_conn = self._libvirt(endpoint_of(news))
        except transport.TransportError as err:
            return source, (
                f"Could not check where the VM runs now ({err}): `pulumi refresh`, then `up`."
            )
        return job.recover(source_conn, target_conn, name, source, target)

    def _disks(self, source_props: dict[str, Any], news: dict[str, Any]) -> list[dict[str, Any]]:
        """The disks a move copies: the stack's, or an adopted VM's own, read from its live
        definition on the source (sizes: pre-flight reads each source's)."""
        if not news["adopt"]:
            return list(news["disks"])
        dom = self._libvirt(endpoint_of(source_props)).lookupByName(news["name"])
        return [{"path": d.path, "size_mib": 0} for d in live_xml.disks(dom.XMLDesc(0))]

    def _warm_up_router(self, news: dict[str, Any]) -> None:
        router = news.get("cutover_router")
        if router and self._credentials is not None:
            # The network's cutover follows the copy: open its router's SSH connection
            # meanwhile, so the switch does not wait for a handshake (~110 ms in the lab).
            transport.warm_up(endpoint_of({"host": router}), self._credentials)


def _split(dom: Any) -> bool:
    """Whether this copy of a VM is one half of a post-copy move (its memory split)."""
    import libvirt

    from providers.migration.policy import postcopy_state

    try:
        return postcopy_state(*dom.state()) is not None
    except libvirt.libvirtError:
        return False


class VmPlacement(Resource, module="vm", name="VmPlacement"):
    """A VM defined and running on one host; changing its host live-migrates it.

    The inputs are VmPlacementArgs' (providers/schema/vm_placement.py); one left None
    takes its default there."""

    host: pulumi.Output[Any]
    running: pulumi.Output[bool]
    last_migration: pulumi.Output[Any]

    def __init__(
        self,
        resource_name: str,
        *,
        name: str,
        host: pulumi.Input[dict[str, Any]],
        fleet: Mapping[str, pulumi.Input[dict[str, Any]]],
        ip: str,
        vif: str,
        memory_mib: int | None = None,
        vcpus: int | None = None,
        cpu_model: str | None = None,
        mac: str | None = None,
        adopt: bool | None = None,
        disks: Sequence[Disk] = (),
        boot: Boot | None = None,
        domain_type: DomainType | None = None,
        migration: Migration | None = None,
        on_remove: OnRemove | None = None,
        shutdown_timeout_s: int | None = None,
        delete_disks: bool | None = None,
        cutover_router: pulumi.Input[dict[str, Any]] | None = None,
        tunnel_addresses: Mapping[str, Mapping[str, str]] | None = None,
        moves_at_once: int | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            VmPlacementProvider(),
            resource_name,
            {
                "name": name,
                "host": host,
                "fleet": dict(fleet),
                "ip": ip,
                "vif": vif,
                "memory_mib": memory_mib,
                "vcpus": vcpus,
                "cpu_model": cpu_model,
                "mac": mac,
                "adopt": adopt,
                "disks": [disk.model_dump() for disk in disks],
                "boot": None if boot is None else dict(boot),
                "domain_type": domain_type,
                "migration": None if migration is None else migration.model_dump(),
                "on_remove": on_remove,
                "shutdown_timeout_s": shutdown_timeout_s,
                "delete_disks": delete_disks,
                "cutover_router": cutover_router,
                "moves_at_once": moves_at_once,
                "tunnel_addresses": None
                if tunnel_addresses is None
                else {host: dict(peers) for host, peers in tunnel_addresses.items()},
                "uuid": None,
                "running": None,
                "autostart": None,
                "last_migration": None,
            },
            opts,
        )
