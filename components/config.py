"""The stack config (`glidepath:*`), parsed once into typed structures.

Everything a user can get wrong is checked here, before any resource is declared, so a
malformed stack fails `pulumi preview` with a message naming the field and no command
reaches a host. `parse_config` is pure (a dict in, a StackConfig or ConfigError out), so
it is tested directly and reused by tools that validate a stack without the engine.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from providers import validate
from providers.validate import Invalid

CUTOVER_KINDS = ("lab-router", "hetzner-robot", "manual")


class ConfigError(ValueError):
    """One or more fields of the stack config are wrong; each line names its field."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid stack config:\n  " + "\n  ".join(problems))


@dataclass(frozen=True)
class HostConfig:
    name: str
    address: str
    port: int = 22
    user: str = "root"
    uplink: str = "br0"

    def endpoint(self) -> dict[str, Any]:
        """The `host` input every host-level resource takes."""
        return {"name": self.name, "address": self.address, "port": self.port, "user": self.user}


@dataclass(frozen=True)
class LinkConfig:
    """An `ssh -w` tunnel: hosts[0] runs ssh; addresses[i] goes on hosts[i]'s tunN."""

    hosts: tuple[str, str]
    tun: int
    addresses: tuple[str, str]
    kind: str = "ssh-tun"

    @property
    def name(self) -> str:
        return f"{self.hosts[0]}-{self.hosts[1]}-tun{self.tun}"

    def address_of(self, host: str) -> str:
        return self.addresses[self.hosts.index(host)]

    def peer_of(self, host: str) -> str:
        return self.hosts[1 - self.hosts.index(host)]


@dataclass(frozen=True)
class CutoverConfig:
    kind: str
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NetworkConfig:
    name: str
    prefix: str
    upstream: str  # "auto" or a host name
    cutover: CutoverConfig
    mark: int = 1
    table_id: int = 201
    table_name: str = "vm-out"
    rule_priority: int = 1000
    # Above the /32 vif routes (metric 0) so a VM's own host route always wins.
    tunnel_route_metric: int = 100


@dataclass(frozen=True)
class DiskConfig:
    path: str
    size_mib: int


@dataclass(frozen=True)
class MigrationConfig:
    max_downtime_ms: int = 100
    bandwidth_mib_s: int = 0
    auto_converge: bool = True
    timeout_s: int = 600


@dataclass(frozen=True)
class VmConfig:
    name: str
    host: str
    network: str
    ip: str
    vif: str
    memory_mib: int
    disks: tuple[DiskConfig, ...]
    migration: MigrationConfig
    domain_type: str = "kvm"
    boot: Mapping[str, str] = field(default_factory=dict)
    delete_disks: bool = False  # on removal from the stack; kept by default


@dataclass(frozen=True)
class StackConfig:
    hosts: dict[str, HostConfig]
    links: tuple[LinkConfig, ...]
    networks: dict[str, NetworkConfig]
    vms: dict[str, VmConfig]

    def vms_of(self, network: str) -> list[VmConfig]:
        return [vm for vm in self.vms.values() if vm.network == network]

    def link_between(self, a: str, b: str) -> LinkConfig | None:
        for link in self.links:
            if set(link.hosts) == {a, b}:
                return link
        return None


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def parse(self, where: str, parse: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return parse(value, *args, **kwargs)
        except Invalid as err:
            self.items.append(f"{where}: {err}")
            return None

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}")


def _mapping(problems: _Problems, where: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.add(where, "must be a mapping")
        return {}
    return value


def _positive(value: Any, high: int = 1 << 31) -> int:
    return validate.integer(value, 1, high)


def parse_config(raw: Mapping[str, Any]) -> StackConfig:
    """`raw` maps short keys (hosts, ssh, links, networks, vms) to their values."""
    p = _Problems()

    hosts: dict[str, HostConfig] = {}
    raw_hosts = _mapping(p, "glidepath:hosts", raw.get("hosts"))
    if not raw_hosts:
        p.add("glidepath:hosts", "at least one host is required")
    default_user = "root"
    addresses_seen: dict[str, str] = {}
    for name, spec in raw_hosts.items():
        where = f"glidepath:hosts.{name}"
        p.parse(where, validate.name, name, "host name")
        spec = _mapping(p, where, spec)
        address = p.parse(f"{where}.address", validate.address, spec.get("address"))
        if address in addresses_seen:
            p.add(f"{where}.address", f"{address} is also host {addresses_seen[address]}'s")
        elif address:
            addresses_seen[address] = name
        port = p.parse(f"{where}.port", validate.integer, spec.get("port", 22), 1, 65535)
        user = p.parse(f"{where}.user", validate.name, spec.get("user", default_user), "user")
        uplink = p.parse(f"{where}.uplink", validate.interface_name, spec.get("uplink", "br0"))
        if None not in (address, port, user, uplink):
            hosts[name] = HostConfig(name, address, port, user, uplink)

    links: list[LinkConfig] = []
    raw_links = raw.get("links") or []
    if not isinstance(raw_links, list):
        p.add("glidepath:links", "must be a list")
        raw_links = []
    tuns_per_host: dict[tuple[str, int], str] = {}
    for index, spec in enumerate(raw_links):
        where = f"glidepath:links[{index}]"
        spec = _mapping(p, where, spec)
        kind = spec.get("kind", "ssh-tun")
        if kind != "ssh-tun":
            p.add(f"{where}.kind", f"{kind!r} is not supported (ssh-tun)")
        pair = spec.get("hosts")
        if not (isinstance(pair, list) and len(pair) == 2 and pair[0] != pair[1]):
            p.add(f"{where}.hosts", "must name two different hosts")
            continue
        for host in pair:
            if host not in raw_hosts:
                p.add(f"{where}.hosts", f"{host!r} is not in glidepath:hosts")
        tun = p.parse(f"{where}.tun", validate.integer, spec.get("tun"), 0, 255)
        raw_addresses = spec.get("addresses")
        if not (isinstance(raw_addresses, list) and len(raw_addresses) == 2):
            p.add(f"{where}.addresses", "must be two addresses with prefix length")
            continue
        ends = [
            p.parse(f"{where}.addresses[{i}]", validate.interface_address, a)
            for i, a in enumerate(raw_addresses)
        ]
        if None in ends or tun is None:
            continue
        a, b = (ipaddress.ip_interface(e) for e in ends)
        if a.network != b.network or a.ip == b.ip:
            p.add(f"{where}.addresses", "must be two different addresses in one network")
            continue
        for host in pair:
            other = tuns_per_host.get((host, tun))
            if other:
                p.add(f"{where}.tun", f"tun{tun} on {host} is already used by {other}")
            tuns_per_host[(host, tun)] = where
        links.append(LinkConfig((pair[0], pair[1]), tun, (str(a), str(b)), kind))

    networks: dict[str, NetworkConfig] = {}
    for name, spec in _mapping(p, "glidepath:networks", raw.get("networks")).items():
        where = f"glidepath:networks.{name}"
        p.parse(where, validate.name, name, "network name")
        spec = _mapping(p, where, spec)
        prefix = p.parse(f"{where}.prefix", validate.prefix, spec.get("prefix"))
        upstream = spec.get("upstream", "auto")
        if upstream != "auto" and upstream not in raw_hosts:
            p.add(f"{where}.upstream", f"{upstream!r} is neither 'auto' nor a host")
        cutover_spec = _mapping(p, f"{where}.cutover", spec.get("cutover", {"kind": "manual"}))
        kind = cutover_spec.get("kind")
        if kind not in CUTOVER_KINDS:
            p.add(f"{where}.cutover.kind", f"{kind!r} is not one of {', '.join(CUTOVER_KINDS)}")
        settings = {k: v for k, v in cutover_spec.items() if k != "kind"}
        mark = p.parse(f"{where}.mark", validate.integer, spec.get("mark", 1), 1, 0xFFFFFFFF)
        table = _mapping(p, f"{where}.table", spec.get("table", {}))
        table_id = p.parse(f"{where}.table.id", validate.integer, table.get("id", 201), 1, 252)
        table_name = p.parse(
            f"{where}.table.name", validate.name, table.get("name", "vm-out"), "table name"
        )
        priority = p.parse(
            f"{where}.rule_priority", validate.integer, spec.get("rule_priority", 1000), 1, 32765
        )
        if None in (prefix, mark, table_id, table_name, priority):
            continue
        networks[name] = NetworkConfig(
            name,
            prefix,
            upstream,
            CutoverConfig(str(kind), settings),
            mark,
            table_id,
            table_name,
            priority,
        )
    marks: dict[int, str] = {}
    for net in networks.values():
        if net.mark in marks:
            p.add(f"glidepath:networks.{net.name}.mark", f"{net.mark} is also {marks[net.mark]}'s")
        marks[net.mark] = net.name
    nets = list(networks.values())
    for i, first in enumerate(nets):
        for second in nets[i + 1 :]:
            if ipaddress.ip_network(first.prefix).overlaps(ipaddress.ip_network(second.prefix)):
                p.add(
                    f"glidepath:networks.{second.name}.prefix",
                    f"{second.prefix} overlaps {first.name}'s {first.prefix}",
                )

    vms: dict[str, VmConfig] = {}
    ips_seen: dict[str, str] = {}
    vifs_seen: dict[tuple[str, str], str] = {}
    for name, spec in _mapping(p, "glidepath:vms", raw.get("vms")).items():
        where = f"glidepath:vms.{name}"
        p.parse(where, validate.name, name, "VM name")
        spec = _mapping(p, where, spec)
        host = spec.get("host")
        if host not in raw_hosts:
            p.add(f"{where}.host", f"{host!r} is not in glidepath:hosts")
        network = spec.get("network")
        if network not in networks:
            p.add(f"{where}.network", f"{network!r} is not in glidepath:networks")
        ip = p.parse(f"{where}.ip", validate.address, spec.get("ip"))
        if ip and network in networks:
            subnet = ipaddress.ip_network(networks[network].prefix)
            # Every address of the prefix is a VM's, the network and broadcast addresses
            # too: each VM is a /32 routed to its tap, so there is no broadcast domain
            # (the blog's point: a /29 holds eight VMs on vif0..vif7, none wasted).
            if ipaddress.ip_address(ip) not in subnet:
                p.add(f"{where}.ip", f"{ip} is outside {network}'s prefix {subnet}")
        if ip in ips_seen:
            p.add(f"{where}.ip", f"{ip} is also VM {ips_seen[ip]}'s")
        elif ip:
            ips_seen[ip] = name
        vif = p.parse(f"{where}.vif", validate.interface_name, spec.get("vif"))
        if vif:
            # A vif name is a tap on whichever host the VM runs: unique fleet-wide.
            if ("*", vif) in vifs_seen:
                p.add(f"{where}.vif", f"{vif} is also VM {vifs_seen[('*', vif)]}'s")
            vifs_seen[("*", vif)] = name
        memory = p.parse(f"{where}.memory_mib", _positive, spec.get("memory_mib", 128), 1 << 20)
        disks: list[DiskConfig] = []
        raw_disks = spec.get("disks") or []
        if not isinstance(raw_disks, list):
            p.add(f"{where}.disks", "must be a list")
            raw_disks = []
        for index, disk in enumerate(raw_disks):
            dwhere = f"{where}.disks[{index}]"
            disk = _mapping(p, dwhere, disk)
            path = p.parse(f"{dwhere}.path", validate.absolute_path, disk.get("path"))
            size = p.parse(f"{dwhere}.size_mib", _positive, disk.get("size_mib"), 1 << 24)
            if path and size:
                disks.append(DiskConfig(path, size))
        mig = _mapping(p, f"{where}.migration", spec.get("migration", {}))
        migration = MigrationConfig(
            max_downtime_ms=p.parse(
                f"{where}.migration.max_downtime_ms",
                validate.integer,
                mig.get("max_downtime_ms", 100),
                1,
                60_000,
            ),
            bandwidth_mib_s=p.parse(
                f"{where}.migration.bandwidth_mib_s",
                validate.integer,
                mig.get("bandwidth_mib_s", 0),
                0,
                1 << 20,
            ),
            auto_converge=bool(mig.get("auto_converge", True)),
            timeout_s=p.parse(
                f"{where}.migration.timeout_s",
                validate.integer,
                mig.get("timeout_s", 600),
                1,
                86_400,
            ),
        )
        domain_type = spec.get("domain_type", "kvm")
        if domain_type not in ("kvm", "qemu"):
            p.add(f"{where}.domain_type", f"{domain_type!r} is not kvm or qemu (TCG)")
        boot = _mapping(p, f"{where}.boot", spec.get("boot"))
        for key in ("kernel", "initrd"):
            if key in boot:
                p.parse(f"{where}.boot.{key}", validate.absolute_path, boot[key])
        unknown = set(boot) - {"kernel", "initrd", "cmdline"}
        if unknown:
            p.add(f"{where}.boot", f"unknown fields {sorted(unknown)}")
        if host in raw_hosts and network in networks and ip and vif and memory:
            vms[name] = VmConfig(
                name,
                host,
                network,
                ip,
                vif,
                memory,
                tuple(disks),
                migration,
                str(domain_type),
                {k: str(v) for k, v in boot.items()},
                bool(spec.get("delete_disks", False)),
            )

    if p.items:
        raise ConfigError(p.items)
    return StackConfig(hosts, tuple(links), networks, vms)


def load_config() -> StackConfig:
    """Read `glidepath:*` from the running stack (inside the Pulumi program)."""
    import pulumi

    config = pulumi.Config("glidepath")
    raw = {
        # glidepath:ssh holds the secret key: only the providers read it (configure()).
        key: config.get_object(key)
        for key in ("hosts", "links", "networks", "vms")
    }
    return parse_config(raw)
