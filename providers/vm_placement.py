"""VmPlacement: a libvirt domain, defined and running on the host the stack names.

Changing `host` is an update, never a replace: the update live-migrates the VM with its
disks (LIVE | NON_SHARED_DISK | PERSIST_DEST | UNDEFINE_SOURCE). Preview names the move
and runs read-only pre-flight checks on the target; a failed check fails the preview.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, UpdateResult

from providers import transport, validate
from providers.base import HostProvider, endpoint_of, parse_endpoint
from providers.plans import handover
from providers.plans import migration as policy
from providers.plans.domain import (
    MIB,
    DiskCheck,
    DomainSpec,
    describe_move,
    domain_xml,
    plan_target_disks,
)
from providers.transport import Endpoint, SshSession

POLL_S = 0.5
PROGRESS_EVERY_S = 5.0  # one line per phase change would hide a stall; every 5 s reads well
KEEPALIVE_S = 5.0  # a call on the target's connection while the source copies
SPEC_FIELDS = ("memory_mib", "vcpus", "vif", "mac", "disks", "boot", "domain_type")


class PreflightError(RuntimeError):
    """A move cannot start; the message lists what to fix. Nothing was changed."""


class MigrationError(RuntimeError):
    """A move failed; the VM still runs on the source (the message says so)."""


def _log(line: str) -> None:
    # The engine relays a provider's stdout into the `pulumi up` output as it runs.
    print(line, flush=True)


class _JobStatsReader:
    """Reads the migration job's stats in a thread of its own.

    libvirt serialises queries with the migration's own monitor calls: a `jobStats` can
    wait up to 30 s for the job lock (a 1 MiB/s move went 30.5 s without a progress
    line). The monitor loop must not wait with it: it keeps its timeout, keepalive and
    progress lines going, and says how old the last stats are.
    """

    def __init__(self, dom: Any, started: float) -> None:
        self._dom = dom
        self._started = started
        self._lock = threading.Lock()
        self._latest: tuple[float, dict[str, Any]] | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jobstats", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import libvirt

        while not self._stopped.is_set():
            try:
                stats = self._dom.jobStats()
            except libvirt.libvirtError:
                stats = None  # the job is finishing
            if stats:
                with self._lock:
                    self._latest = (time.monotonic(), stats)
            self._stopped.wait(POLL_S)

    def latest(self) -> tuple[policy.JobSnapshot | None, float]:
        """The newest snapshot (elapsed_s = when it was read) and its age in seconds."""
        with self._lock:
            latest = self._latest
        if latest is None:
            return None, 0.0
        read_at, stats = latest
        age = time.monotonic() - read_at
        return policy.JobSnapshot.from_stats(stats, read_at - self._started), age

    def stop(self) -> None:
        self._stopped.set()


class _End(NamedTuple):
    """One end of a move, as the route handover sees it."""

    host: str
    ssh: SshSession
    ip: str
    vif: str


class _RouteHandover:
    """Moves a migrating VM's /32 from the source's tap to the target's at the instant
    the source pauses (providers/plans/handover.py says why).

    `hold` before the migration starts; `finish` after it ended, whatever the outcome:
    it routes the address where the VM runs and removes the hold.
    """

    def __init__(
        self,
        name: str,
        source: _End,
        target: _End,
    ) -> None:
        self._name = name
        self._source, self._target = source, target
        self._paused = threading.Event()
        self._stopped = threading.Event()
        self._handed = threading.Event()
        self._callback: int | None = None
        self._conn: Any = None
        self._thread: threading.Thread | None = None

    def hold(self, timeout_s: float) -> None:
        target = self._target
        target.ssh.run(handover.make_hold_dir())
        host_now = int(target.ssh.run(["date", "+%s"]).stdout.strip())
        content = handover.hold_until(host_now, timeout_s)
        target.ssh.write_file(handover.hold_path(target.vif), content, "0600")

    def watch(self, source_conn: Any, dom: Any) -> None:
        """Hand the route over when libvirt reports the source paused for the switch."""
        import libvirt

        def on_lifecycle(_conn: Any, _dom: Any, event: int, detail: int, _opaque: Any) -> None:
            # Runs in libvirt's event loop thread: note it and return.
            if (
                event == libvirt.VIR_DOMAIN_EVENT_SUSPENDED
                and detail == libvirt.VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED
            ):
                self._paused.set()

        self._conn = source_conn
        self._callback = source_conn.domainEventRegisterAny(
            dom, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, on_lifecycle, None
        )
        self._thread = threading.Thread(
            target=self._run, name=f"handover-{self._name}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._paused.wait(0.2):
            if self._stopped.is_set():
                return
        started = time.monotonic()
        # Both ends at once: which host receives the traffic depends on the upstream.
        away = threading.Thread(target=self._route_away, daemon=True)
        away.start()
        target = self._target
        try:
            target.ssh.run(handover.route_here(target.ip, target.vif))
            self._handed.set()
        except Exception as err:  # finish routes it once the move ended
            _log(
                f"{self._name}: routing {target.ip} to {target.vif} on {target.host} failed: {err}"
            )
        away.join(10)
        _log(
            f"{self._name}: paused on {self._source.host}; {target.ip} routed to {target.host} "
            f"{(time.monotonic() - started) * 1000:.0f} ms later"
        )

    def _route_away(self) -> None:
        source = self._source
        with contextlib.suppress(Exception):  # the route may be gone with the tap already
            source.ssh.run(handover.route_away(source.ip, source.vif), check=False)

    def finish(self, moved: bool) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(15)
        if self._callback is not None:
            with contextlib.suppress(Exception):
                self._conn.domainEventDeregisterAny(self._callback)
        source, target = self._source, self._target
        with contextlib.suppress(Exception):
            target.ssh.run(handover.release(target.vif), check=False)
        if moved and not self._handed.is_set():
            # No pause event reached us (or its routing failed): route it now.
            _log(f"{self._name}: routing {target.ip} to {target.vif} on {target.host} now")
            target.ssh.run(handover.route_here(target.ip, target.vif))
        elif not moved and self._paused.is_set():
            # The VM runs on the source again (see _recover): its route comes back.
            result = source.ssh.run(handover.route_here(source.ip, source.vif), check=False)
            if not result.ok:
                _log(
                    f"{self._name}: could not route {source.ip} to {source.vif} "
                    f"on {source.host} again"
                )


def _parse_disks(value: Any) -> list[dict[str, Any]]:
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


def _parse_boot(value: Any) -> dict[str, str]:
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


def _parse_migration(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise validate.Invalid("must be a mapping")
    return {
        "max_downtime_ms": validate.integer(value.get("max_downtime_ms", 100), 1, 60_000),
        "bandwidth_mib_s": validate.integer(value.get("bandwidth_mib_s", 0), 0, 1 << 20),
        "auto_converge": bool(value.get("auto_converge", True)),
        "timeout_s": validate.integer(value.get("timeout_s", 600), 1, 86_400),
    }


def _parse_fleet(value: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict):
        raise validate.Invalid("must map host names to endpoints")
    return {name: parse_endpoint(endpoint) for name, endpoint in value.items()}


def _domain_type(value: Any) -> str:
    if value not in ("qemu", "kvm"):
        raise validate.Invalid("must be 'kvm' or 'qemu' (TCG)")
    return str(value)


@dataclass
class Placement:
    """Where a domain was found: host name and whether it runs."""

    host: str
    running: bool
    domain: Any


class VmPlacementProvider(HostProvider):
    identity = ("name",)

    # --- check / diff ----------------------------------------------------------------

    def check_inputs(self, checker: validate.Checker) -> None:
        checker.field("name", lambda v: validate.name(v, "VM name"))
        checker.field("vif", validate.interface_name)
        checker.field("ip", validate.address)
        checker.field("memory_mib", lambda v: validate.integer(v, 96, 1 << 22))
        checker.field("vcpus", lambda v: validate.integer(v, 1, 256), default=1)
        checker.field("disks", _parse_disks)
        checker.field("boot", _parse_boot, required=False)
        checker.field("migration", _parse_migration, default={})
        checker.field("fleet", _parse_fleet)
        checker.field("domain_type", _domain_type, default="qemu")
        checker.field("delete_disks", lambda v: bool(v), default=False)
        checker.field("cutover_router", parse_endpoint, required=False)
        fleet = checker.inputs.get("fleet")
        host = checker.inputs.get("host")
        if isinstance(fleet, dict) and isinstance(host, dict) and host.get("name") not in fleet:
            checker.fail("host", f"{host.get('name')!r} is not one of the stack's hosts")

    def diffed_fields(self, news: dict[str, Any]) -> list[str]:
        # Not `cutover_router`: where the network's cutover will switch says nothing about
        # the VM; it only lets a move prepare that connection (see `migrate`).
        return ["name", "host", "migration", "delete_disks", *SPEC_FIELDS]

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
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
                    sum(int(d["size_mib"]) for d in news.get("disks") or []),
                    int(news["memory_mib"]),
                    int((news.get("migration") or {}).get("max_downtime_ms", 100)),
                )
            )
            # Read-only pre-flight at preview: a move that cannot work fails here.
            self.preflight(olds, news)
        if olds.get("running") is False and not result.changes:
            # Found stopped (refresh read it so): the stack wants it running; `up` starts it.
            _log(f"{news['name']}: not running on {olds['host']['name']}: up starts it")
            return DiffResult(changes=True, replaces=[], delete_before_replace=False)
        return result

    # --- host access ---------------------------------------------------------------------

    def _libvirt(self, endpoint: Endpoint) -> Any:
        if self._credentials is None:
            raise transport.TransportError(
                self._credentials_error or "glidepath:ssh is not configured for this stack"
            )
        return transport.libvirt_connection(endpoint, self._credentials)

    def _find(self, props: dict[str, Any]) -> Placement | None:
        """Where the domain is: the stored host first, then every host of the fleet."""
        import libvirt

        fleet: dict[str, dict[str, Any]] = props.get("fleet") or {}
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
        if len(running) > 1:
            hosts = ", ".join(p.host for p in running)
            raise RuntimeError(f"{props['name']} runs on more than one host ({hosts}): fix by hand")
        candidates = running or found
        return candidates[0] if candidates else None

    # --- create / read / delete --------------------------------------------------------

    def _ensure_disks(self, session: SshSession, disks: list[dict[str, Any]]) -> None:
        for disk in disks:
            size = _file_size(session, disk["path"])
            if size is None:
                _log(
                    f"{session.endpoint.name}: creating disk {disk['path']} "
                    f"({disk['size_mib']} MiB)"
                )
                session.run(["install", "-d", "-m", "0755", disk["path"].rsplit("/", 1)[0] or "/"])
                session.run(
                    ["qemu-img", "create", "-q", "-f", "raw", disk["path"], f"{disk['size_mib']}M"]
                )

    def create(self, props: dict[str, Any]) -> CreateResult:
        name = props["name"]
        existing = self._find(props)
        if existing is not None and existing.host != props["host"]["name"] and existing.running:
            raise RuntimeError(
                f"{name} already runs on {existing.host}; set host: {existing.host} in the stack "
                "to adopt it there"
            )
        endpoint = endpoint_of(props)
        conn = self._libvirt(endpoint)
        self._ensure_disks(self.session(props), props["disks"])
        spec = DomainSpec.from_props(props, props.get("domain_type", "qemu"))
        dom = conn.defineXML(domain_xml(spec))
        if not dom.isActive():
            self._start(props, dom)
            _log(f"{name}: started on {endpoint.name}")
        return CreateResult(name, self._outputs(props, dom, None))

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
            "last_migration": last,
        }

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        placement = self._find(props)
        if placement is None:
            return ReadResult("", {})
        fleet = props.get("fleet") or {}
        host = fleet.get(placement.host, props["host"])
        return ReadResult(
            id_,
            {
                **props,
                "host": host,
                "running": placement.running,
                "uuid": placement.domain.UUIDString(),
            },
        )

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        import libvirt

        placement = self._find(props)
        if placement is None:
            return
        dom = placement.domain
        if dom.isActive():
            dom.destroy()  # the stack no longer wants this VM: power it off now
        try:
            dom.undefine()
        except libvirt.libvirtError:
            if dom.isPersistent():
                raise
        if props.get("delete_disks"):
            fleet = props.get("fleet") or {}
            session = self.session({"host": fleet.get(placement.host, props["host"])})
            for disk in props.get("disks") or []:
                session.run(["rm", "-f", "--", disk["path"]])
            _log(f"{props['name']}: stopped, undefined and its disks removed on {placement.host}")
        else:
            _log(f"{props['name']}: stopped and undefined on {placement.host} (disks kept)")

    # --- update: spec changes and live migration -------------------------------------

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        placement = self._find(olds)
        if placement is None:
            raise RuntimeError(f"{news['name']} is defined on no host; `pulumi refresh` then `up`")
        last = olds.get("last_migration")
        target = news["host"]["name"]
        if placement.host != target:
            last = self.migrate(olds, news, placement)
        spec = DomainSpec.from_props(news, news.get("domain_type", "qemu"))
        conn = self._libvirt(endpoint_of(news))
        dom = conn.lookupByName(news["name"])
        if any(olds.get(k) != news.get(k) for k in SPEC_FIELDS):
            conn.defineXML(domain_xml(spec))  # takes effect at the next boot
            _log(f"{news['name']}: definition updated; memory/CPU/boot changes apply at next boot")
        if not dom.isActive():
            self._start(news, dom)
            _log(f"{news['name']}: started on {target}")
        return UpdateResult(self._outputs(news, dom, last))

    def _disk_checks(
        self, source: SshSession, target: SshSession, disks: list[dict[str, Any]]
    ) -> list[DiskCheck]:
        checks = []
        for disk in disks:
            source_bytes = _file_size(source, disk["path"])
            if source_bytes is None:
                source_bytes = int(disk["size_mib"]) * MIB
            target_bytes = _file_size(target, disk["path"])
            free = None
            if target_bytes is None:
                free = _free_bytes(target, disk["path"].rsplit("/", 1)[0] or "/")
            checks.append(DiskCheck(disk["path"], source_bytes, target_bytes, free))
        return checks

    def preflight(
        self, olds: dict[str, Any], news: dict[str, Any], *, announce: bool = True
    ) -> tuple[list[str], dict[str, int]]:
        """Read-only checks that a move can work. -> (disks to create, slices).
        `announce`: say so when they pass (the preview's diff does; the move repeats them
        silently just before it starts)."""
        import libvirt

        problems: list[str] = []
        source_name = (olds.get("host") or {}).get("name", "?")
        target = endpoint_of(news)
        try:
            target_conn = self._libvirt(target)
            source_conn = self._libvirt(endpoint_of(olds))
        except transport.TransportError as err:
            raise PreflightError(f"{news['name']}: pre-flight: {err}") from err
        try:
            dom = source_conn.lookupByName(news["name"])
        except libvirt.libvirtError as err:
            raise PreflightError(
                f"{news['name']}: pre-flight: not defined on {source_name}; run `pulumi refresh`"
            ) from err
        if target_conn.getLibVersion() < source_conn.getLibVersion():
            problems.append(
                f"libvirt on {target.name} ({_version(target_conn.getLibVersion())}) is older "
                f"than on {source_name} ({_version(source_conn.getLibVersion())})"
            )
        if target_conn.getVersion() < source_conn.getVersion():
            problems.append(
                f"QEMU on {target.name} ({_version(target_conn.getVersion())}) is older than on "
                f"{source_name} ({_version(source_conn.getVersion())})"
            )
        free_mib = target_conn.getFreeMemory() // MIB
        if free_mib < int(news["memory_mib"]) + 64:
            problems.append(
                f"{target.name} has {free_mib} MiB free, {news['memory_mib']} MiB (+64) needed"
            )
        try:
            target_conn.lookupByName(news["name"])
            problems.append(f"a domain named {news['name']} is already defined on {target.name}")
        except libvirt.libvirtError:
            pass
        cpu = _cpu_xml(dom.XMLDesc(0))
        if cpu is not None:
            # Against what the target's hypervisor offers for this domain type (TCG can
            # emulate models the host CPU lacks; KVM cannot).
            verdict = target_conn.compareHypervisorCPU(
                None, "x86_64", None, news.get("domain_type", "qemu"), cpu, 0
            )
            if verdict == libvirt.VIR_CPU_COMPARE_INCOMPATIBLE:
                problems.append(f"{target.name}'s CPU cannot run the VM's CPU model")
        source_ssh = self.session(olds)
        target_ssh = self.session(news)
        create, slices, disk_problems = plan_target_disks(
            self._disk_checks(source_ssh, target_ssh, news["disks"])
        )
        problems += disk_problems
        if problems:
            raise PreflightError(
                f"{news['name']}: cannot move {source_name} -> {target.name}:\n  - "
                + "\n  - ".join(problems)
            )
        if not announce:
            return create, slices
        _log(
            f"{news['name']}: pre-flight ok on {target.name} (libvirt "
            f"{_version(target_conn.getLibVersion())}, QEMU {_version(target_conn.getVersion())}, "
            f"{free_mib} MiB free"
            + (f", will create {', '.join(create)}" if create else "")
            + (f", bigger target disk kept at source size: {', '.join(slices)}" if slices else "")
            + ")"
        )
        return create, slices

    def migrate(
        self, olds: dict[str, Any], news: dict[str, Any], placement: Placement
    ) -> dict[str, Any]:
        import libvirt

        name = news["name"]
        source_props = {**olds, "host": (olds.get("fleet") or {}).get(placement.host, olds["host"])}
        create, slices = self.preflight(source_props, news, announce=False)
        target_ssh = self.session(news)
        for path in create:
            size_mib = next(int(d["size_mib"]) for d in news["disks"] if d["path"] == path)
            source_size = _file_size(self.session(source_props), path) or size_mib * MIB
            target_ssh.run(["qemu-img", "create", "-q", "-f", "raw", path, str(source_size)])
        settings = news.get("migration") or {}
        max_downtime = int(settings.get("max_downtime_ms", 100))
        spec = DomainSpec.from_props(news, news.get("domain_type", "qemu"))
        source_conn = self._libvirt(endpoint_of(source_props))
        target_conn = self._libvirt(endpoint_of(news))
        dom = source_conn.lookupByName(name)
        params: dict[str, Any] = {
            libvirt.VIR_MIGRATE_PARAM_DEST_XML: domain_xml(spec, slices),
            libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS: [d.target for d in spec.disks],
        }
        if int(settings.get("bandwidth_mib_s", 0)) > 0:
            params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = int(settings["bandwidth_mib_s"])
        flags = (
            libvirt.VIR_MIGRATE_LIVE  # the guest keeps running while memory is copied
            | libvirt.VIR_MIGRATE_NON_SHARED_DISK  # copy whole disks (no shared storage)
            | libvirt.VIR_MIGRATE_PERSIST_DEST  # define it on the target, not just run it
            | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE  # and forget it on the source: one owner
        )
        if settings.get("auto_converge", True):
            flags |= libvirt.VIR_MIGRATE_AUTO_CONVERGE  # throttle a guest that dirties faster
        dom.migrateSetMaxDowntime(max_downtime, 0)
        timeout_s = float(settings.get("timeout_s", 600))
        routes = _RouteHandover(
            name,
            _End(placement.host, self.session(source_props), olds["ip"], olds["vif"]),
            _End(news["host"]["name"], target_ssh, news["ip"], news["vif"]),
        )
        routes.hold(timeout_s)
        _log(f"{name}: migrating {placement.host} -> {news['host']['name']}")
        moved = False
        try:
            routes.watch(source_conn, dom)
            outcome: dict[str, Any] = {}

            def worker() -> None:
                try:
                    outcome["domain"] = dom.migrate3(target_conn, params, flags)
                except BaseException as err:  # reported by the monitor below
                    outcome["error"] = err

            started = time.monotonic()
            thread = threading.Thread(target=worker, name=f"migrate-{name}", daemon=True)
            thread.start()
            router = news.get("cutover_router")
            if router and self._credentials is not None:
                # The network's cutover follows the copy: open its router's SSH connection
                # meanwhile, so the switch does not wait for a handshake (~110 ms in the lab).
                transport.warm_up(endpoint_of({"host": router}), self._credentials)
            reader = _JobStatsReader(dom, started)
            downtime = max_downtime
            aborted: str | None = None
            next_progress = started
            next_keepalive = started + KEEPALIVE_S
            first: policy.JobSnapshot | None = None
            try:
                while thread.is_alive():
                    thread.join(POLL_S)
                    if not thread.is_alive():
                        break
                    now = time.monotonic()
                    if now >= next_keepalive:
                        # The target's connection is idle from Prepare to Finish, and nothing
                        # reads its SSH channel then: sshd's client-alive checks go unanswered,
                        # it drops the connection and the target's libvirtd kills the incoming
                        # domain (a 1 MiB/s move failed after ~2 min with "migration of disk
                        # vda failed: Input/output error"). A cheap call keeps it serviced.
                        next_keepalive = now + KEEPALIVE_S
                        with contextlib.suppress(libvirt.libvirtError):
                            target_conn.getLibVersion()
                    snapshot, stale_s = reader.latest()
                    if snapshot is None:
                        continue
                    # libvirt updates the mirror's byte counts in chunks: the rate over the
                    # whole job so far gives a steadier ETA than the last interval.
                    first = first or snapshot
                    snapshot = snapshot.with_rate_since(first)
                    decision = policy.decide(
                        # The timeout counts from now, however old the stats are.
                        dataclasses.replace(snapshot, elapsed_s=time.monotonic() - started),
                        max_downtime_ms=max_downtime,
                        current_downtime_ms=downtime,
                        timeout_s=timeout_s,
                    )
                    if decision.abort and aborted is None:
                        aborted = decision.abort
                        _log(f"{name}: aborting: {aborted}")
                        try:
                            dom.abortJob()
                        except libvirt.libvirtError as err:
                            _log(f"{name}: abort failed: {err}")
                    elif decision.set_downtime_ms:
                        downtime = decision.set_downtime_ms
                        _log(
                            f"{name}: not converging at pass {snapshot.memory_iteration}: "
                            f"max downtime -> {downtime} ms"
                        )
                        try:
                            dom.migrateSetMaxDowntime(downtime, 0)
                        except libvirt.libvirtError as err:
                            _log(f"{name}: could not raise max downtime: {err}")
                    if time.monotonic() >= next_progress:
                        _log(policy.progress_line(name, snapshot, stale_s=stale_s))
                        next_progress = time.monotonic() + PROGRESS_EVERY_S
            finally:
                reader.stop()
            seconds = time.monotonic() - started
            if "error" in outcome or aborted:
                where = self._recover(source_conn, name, placement.host)
                reason = aborted or str(outcome.get("error"))
                raise MigrationError(
                    f"{name}: migration {placement.host} -> {news['host']['name']} failed after "
                    f"{seconds:.1f} s: {reason}. {where}"
                )
            new_dom = outcome["domain"]
            stats = {}
            with contextlib.suppress(libvirt.libvirtError):
                stats = new_dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
            last = {
                "from": placement.host,
                "to": news["host"]["name"],
                "seconds": round(seconds, 3),
                "downtime_ms": int(stats.get("downtime", 0)),
                "bytes": int(stats.get("memory_processed", 0))
                + int(stats.get("disk_processed", 0)),
                "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            _log(
                f"{name}: moved {last['from']} -> {last['to']} in {last['seconds']:.1f} s, "
                f"downtime {last['downtime_ms']} ms (QEMU), {last['bytes'] // MIB} MiB copied"
            )
            moved = True
            return last
        finally:
            # After _recover: a VM back on its source gets its route back there.
            routes.finish(moved)

    def _recover(self, source_conn: Any, name: str, source: str) -> str:
        """After a failed move: the VM must run on the source. Say what we found/did."""
        import libvirt

        try:
            dom = source_conn.lookupByName(name)
        except libvirt.libvirtError:
            return (
                f"The VM is no longer defined on {source}: check the target, then `pulumi refresh`."
            )
        state, _reason = dom.state()
        if state == libvirt.VIR_DOMAIN_PAUSED:
            dom.resume()
            return f"The VM was paused on {source} and has been resumed there."
        if dom.isActive():
            return f"The VM still runs on {source}."
        dom.create()
        return f"The VM had stopped on {source} and has been started there again."


def _file_size(session: SshSession, path: str) -> int | None:
    result = session.run(["stat", "-L", "-c", "%s", "--", path], check=False)
    if not result.ok:
        return None
    return int(result.stdout.strip())


def _free_bytes(session: SshSession, directory: str) -> int | None:
    result = session.run(["df", "-B1", "--output=avail", "--", directory], check=False)
    if not result.ok:
        return None
    return int(result.stdout.split()[-1])


def _version(number: int) -> str:
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


def _cpu_xml(domain_xml_text: str) -> str | None:
    import xml.etree.ElementTree as ET

    cpu = ET.fromstring(domain_xml_text).find("cpu")  # noqa: S314 (libvirt's own XML)
    if cpu is None or cpu.find("model") is None:
        return None  # no pinned model (TCG default): nothing to compare
    return ET.tostring(cpu, encoding="unicode")


class VmPlacement(Resource, module="vm", name="VmPlacement"):
    """A VM defined and running on one host; changing its host live-migrates it."""

    host: pulumi.Output[Any]
    running: pulumi.Output[bool]
    last_migration: pulumi.Output[Any]

    def __init__(
        self,
        resource_name: str,
        props: dict[str, Any],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            VmPlacementProvider(),
            resource_name,
            {**props, "uuid": None, "running": None, "last_migration": None},
            opts,
        )
