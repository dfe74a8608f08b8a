"""The stack config (`glidepath:*`), parsed once into typed structures.

Everything a user can get wrong is checked here, before any resource is declared, so a
malformed stack fails `pulumi preview` with a message naming the field and no command
reaches a host. `parse_config` is pure (a dict in, a StackConfig or ConfigError out), so
it is tested directly and reused by tools that validate a stack without the engine.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from pulumi.errors import RunError

from providers import transport, validate
from providers.base import parse_endpoint
from providers.cutover import CutoverError
from providers.cutover.hetzner_robot import parse_base_url
from providers.validate import Invalid

CUTOVER_KINDS = ("lab-router", "hetzner-robot", "manual")


class ConfigError(RunError, ValueError):
    """One or more fields of the stack config are wrong; each line names its field.

    A RunError: the engine shows the message alone, without the program's traceback.
    """

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
    # Where the host's sshd reads its config (the host bootstrap allows tunnels there).
    sshd_config: str = "/etc/ssh/sshd_config"

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


def _known_fields(problems: _Problems, where: str, spec: Mapping[str, Any], known: Any) -> None:
    # A misspelt optional field (`memroy_mib`) would silently fall back to its default.
    unknown = sorted(str(key) for key in spec if key not in known)
    if unknown:
        problems.add(where, f"unknown fields {unknown} (known: {', '.join(sorted(known))})")


def _positive(value: Any, high: int = 1 << 31) -> int:
    return validate.integer(value, 1, high)


def _boolean(value: Any) -> bool:
    # bool("false") is True: a quoted "false" must not turn delete_disks on.
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise Invalid(f"must be true or false, got {value!r}")


def _vif(value: Any) -> str:
    vif = validate.interface_name(value)
    if not vif.startswith("vif"):
        # The egress mark matches `-i vif+`: another tap name would leave the VM unmarked.
        raise Invalid(f"{vif!r} must start with 'vif' (the egress mark matches vif+)")
    return vif


def _ipv4_prefix(value: Any) -> str:
    prefix = validate.prefix(value)
    if ipaddress.ip_network(prefix).version != 4:
        raise Invalid(f"{prefix} is IPv6; glidepath routes IPv4 prefixes (a.b.c.d/n)")
    return prefix


def _cmdline(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 1024 or "\n" in value or "\r" in value:
        raise Invalid("must be one line of at most 1024 characters")
    return value


HOST_FIELDS = ("address", "port", "user", "uplink", "sshd_config")
SSH_FIELDS = ("user", "private_key", "private_key_path", "known_hosts", "known_hosts_path")
LINK_FIELDS = ("hosts", "kind", "tun", "addresses")
NETWORK_FIELDS = ("prefix", "upstream", "cutover", "mark", "table", "rule_priority")
CUTOVER_FIELDS = {
    "lab-router": ("kind", "router", "first_packet_timeout_s"),
    "hetzner-robot": ("kind", "base_url", "failover_ip", "timeout_s", "first_packet_timeout_s"),
    "manual": ("kind", "first_packet_timeout_s"),
}
VM_FIELDS = (
    "host",
    "network",
    "ip",
    "vif",
    "memory_mib",
    "disks",
    "migration",
    "domain_type",
    "boot",
    "delete_disks",
)
MIGRATION_FIELDS = ("max_downtime_ms", "bandwidth_mib_s", "auto_converge", "timeout_s")
#: As VmPlacement's check: below 96 MiB QEMU and a stock kernel do not boot.
MEMORY_MIB = (96, 1 << 22)


def _encrypted(value: Any) -> bool:
    """A `{secure: v1:...}` entry, as a stack file read without the engine holds it."""
    return isinstance(value, dict) and set(value) == {"secure"}


def _parse_ssh(p: _Problems, raw: Any, secrets: Collection[str] | None) -> str:
    """Check glidepath:ssh without keeping it; returns the default SSH user.

    The key itself is only read by the providers (configure()); here it is checked for
    presence, form and secrecy, and never echoed.
    """
    ssh = _mapping(p, "glidepath:ssh", raw)
    if raw is None:
        p.add(
            "glidepath:ssh",
            "is not set: it needs private_key (a secret) or private_key_path, "
            "and known_hosts or known_hosts_path",
        )
        return "root"
    _known_fields(p, "glidepath:ssh", ssh, SSH_FIELDS)
    user = p.parse("glidepath:ssh.user", validate.name, ssh.get("user", "root"), "user")
    key, key_path = ssh.get("private_key"), ssh.get("private_key_path")
    if key and key_path:
        p.add("glidepath:ssh", "set private_key or private_key_path, not both")
    elif _encrypted(key):
        pass  # a secret, read from the file undecrypted: nothing more to check here
    elif key:
        if secrets is not None and "ssh" not in secrets:
            p.add(
                "glidepath:ssh.private_key",
                "must be a secret (pulumi config set --secret --path glidepath:ssh.private_key)",
            )
        # The form only (a public key or a path pasted here is the usual slip); the
        # transport parses the key when it first connects.
        if not isinstance(key, str) or not re.search(
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.+-----END [A-Z0-9 ]*PRIVATE KEY-----",
            key,
            re.DOTALL,
        ):
            p.add(
                "glidepath:ssh.private_key",
                "is not a private key's text (-----BEGIN ... PRIVATE KEY----- ...)",
            )
    elif key_path:
        p.parse("glidepath:ssh.private_key_path", validate.absolute_path, key_path)
    else:
        p.add(
            "glidepath:ssh.private_key",
            "is missing: set it as a secret (pulumi config set --secret --path "
            "glidepath:ssh.private_key < key), or private_key_path",
        )
    known, known_path = ssh.get("known_hosts"), ssh.get("known_hosts_path")
    if known and known_path:
        p.add("glidepath:ssh", "set known_hosts or known_hosts_path, not both")
    elif known_path:
        p.parse("glidepath:ssh.known_hosts_path", validate.absolute_path, known_path)
    elif not known:
        p.add("glidepath:ssh.known_hosts", "is missing: the hosts' public keys (ssh-keyscan)")
    elif not isinstance(known, str):
        p.add("glidepath:ssh.known_hosts", "must be known_hosts text")
    return user or "root"


def _check_known_hosts(p: _Problems, known: Any, hosts: Mapping[str, HostConfig]) -> None:
    """Inline known_hosts must name every host: an unknown key is refused at connect time
    anyway, but the preview is where a user should learn it."""
    if not isinstance(known, str) or not known:
        return
    for name, host in hosts.items():
        try:
            found = transport.has_host_key(known, host.address, host.port)
        except Exception:
            p.add("glidepath:ssh.known_hosts", "is not known_hosts text (host keytype base64)")
            return
        if not found:
            p.add(
                "glidepath:ssh.known_hosts",
                f"has no key for host {name} "
                f"({transport.known_hosts_name(host.address, host.port)})",
            )


def _parse_robot(p: _Problems, raw: Any, secrets: Collection[str] | None) -> None:
    where = "glidepath:robot"
    if raw is None:
        p.add(where, "is not set: the hetzner-robot cutover needs {user, password} as secrets")
        return
    if secrets is not None and "robot" not in secrets:
        p.add(
            where, "must be a secret (pulumi config set --secret --path glidepath:robot.password)"
        )
    robot = _mapping(p, where, raw)
    _known_fields(p, where, robot, ("user", "password"))
    user, password = robot.get("user"), robot.get("password")
    if _encrypted(user):
        pass  # undecrypted (a stack file read without the engine)
    elif not isinstance(user, str) or not user:
        p.add(f"{where}.user", "is missing: a Robot web service user")
    elif ":" in user:
        p.add(f"{where}.user", "must not contain ':' (HTTP basic auth)")
    if not _encrypted(password) and (not isinstance(password, str) or not password):
        p.add(f"{where}.password", "is missing")


def _parse_cutover(p: _Problems, where: str, spec: Any, prefix: str | None) -> CutoverConfig | None:
    cutover = _mapping(p, where, spec)
    kind = cutover.get("kind")
    if kind not in CUTOVER_KINDS:
        p.add(f"{where}.kind", f"{kind!r} is not one of {', '.join(CUTOVER_KINDS)}")
        return None
    _known_fields(p, where, cutover, CUTOVER_FIELDS[kind])
    settings = {k: v for k, v in cutover.items() if k != "kind"}
    if "first_packet_timeout_s" in settings:
        settings["first_packet_timeout_s"] = p.parse(
            f"{where}.first_packet_timeout_s",
            validate.integer,
            settings["first_packet_timeout_s"],
            1,
            3600,
        )
    if kind == "lab-router":
        p.parse(f"{where}.router", parse_endpoint, cutover.get("router") or {})
    if kind == "hetzner-robot":
        if "base_url" in settings:
            try:
                parse_base_url(settings["base_url"])
            except CutoverError as err:
                p.add(f"{where}.base_url", str(err).removeprefix("cutover.base_url "))
        if "timeout_s" in settings:
            p.parse(f"{where}.timeout_s", validate.integer, settings["timeout_s"], 1, 600)
        failover = settings.get("failover_ip")
        if failover is not None:
            ip = p.parse(f"{where}.failover_ip", validate.address, failover)
            if ip and prefix and ipaddress.ip_address(ip) not in ipaddress.ip_network(prefix):
                p.add(f"{where}.failover_ip", f"{ip} is outside the network's prefix {prefix}")
    if None in settings.values():
        return None
    return CutoverConfig(str(kind), settings)


def parse_config(raw: Mapping[str, Any], secrets: Collection[str] | None = None) -> StackConfig:
    """`raw` maps short keys (hosts, ssh, links, networks, vms, robot) to their values.

    `ssh` (and `robot`, where a network uses hetzner-robot) are checked when `raw` has
    them as keys, as `load_config` always does. `secrets` names the short keys the stack
    holds as secrets, and a private key or password outside them is refused; None skips
    that check (a caller that cannot tell, such as a stack file read as YAML).
    """
    p = _Problems()

    default_user = "root"
    if "ssh" in raw:
        default_user = _parse_ssh(p, raw["ssh"], secrets)

    hosts: dict[str, HostConfig] = {}
    raw_hosts = _mapping(p, "glidepath:hosts", raw.get("hosts"))
    if not raw_hosts:
        p.add("glidepath:hosts", "at least one host is required")
    addresses_seen: dict[str, str] = {}
    for name, spec in raw_hosts.items():
        where = f"glidepath:hosts.{name}"
        p.parse(where, validate.name, name, "host name")
        spec = _mapping(p, where, spec)
        _known_fields(p, where, spec, HOST_FIELDS)
        address = p.parse(f"{where}.address", validate.address, spec.get("address"))
        if address in addresses_seen:
            p.add(f"{where}.address", f"{address} is also host {addresses_seen[address]}'s")
        elif address:
            addresses_seen[address] = name
        port = p.parse(f"{where}.port", validate.integer, spec.get("port", 22), 1, 65535)
        user = p.parse(f"{where}.user", validate.name, spec.get("user", default_user), "user")
        uplink = p.parse(f"{where}.uplink", validate.interface_name, spec.get("uplink", "br0"))
        sshd_config = p.parse(
            f"{where}.sshd_config",
            validate.absolute_path,
            spec.get("sshd_config", HostConfig.sshd_config),
        )
        if None not in (address, port, user, uplink, sshd_config):
            hosts[name] = HostConfig(name, address, port, user, uplink, sshd_config)
    if isinstance(raw.get("ssh"), dict):
        _check_known_hosts(p, raw["ssh"].get("known_hosts"), hosts)

    links: list[LinkConfig] = []
    raw_links = raw.get("links") or []
    if not isinstance(raw_links, list):
        p.add("glidepath:links", "must be a list")
        raw_links = []
    tuns_per_host: dict[tuple[str, int], str] = {}
    tunnel_networks: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]] = []
    for index, spec in enumerate(raw_links):
        where = f"glidepath:links[{index}]"
        spec = _mapping(p, where, spec)
        _known_fields(p, where, spec, LINK_FIELDS)
        kind = spec.get("kind", "ssh-tun")
        if kind != "ssh-tun":
            p.add(f"{where}.kind", f"{kind!r} is not supported (ssh-tun)")
        pair = spec.get("hosts")
        if not (isinstance(pair, list) and len(pair) == 2 and pair[0] != pair[1]):
            p.add(f"{where}.hosts", "must name two different hosts")
            continue
        for host in pair:
            if not isinstance(host, str) or host not in raw_hosts:
                p.add(f"{where}.hosts", f"{host!r} is not in glidepath:hosts")
        tun = p.parse(f"{where}.tun", validate.integer, spec.get("tun"), 0, 255)
        raw_addresses = spec.get("addresses")
        if not (isinstance(raw_addresses, list) and len(raw_addresses) == 2):
            p.add(f"{where}.addresses", "must be two addresses with prefix length")
            continue
        ends = [
            p.parse(f"{where}.addresses[{i}]", validate.tunnel_address, a)
            for i, a in enumerate(raw_addresses)
        ]
        if None in ends or tun is None:
            continue
        a, b = (ipaddress.ip_interface(e) for e in ends)
        if a.network != b.network or a.ip == b.ip:
            p.add(f"{where}.addresses", "must be two different addresses in one network")
            continue
        for tunnel_net, used_by in tunnel_networks:
            if a.network.overlaps(tunnel_net):
                p.add(f"{where}.addresses", f"{a.network} overlaps {used_by}'s {tunnel_net}")
        tunnel_networks.append((a.network, where))
        for host in pair:
            other = tuns_per_host.get((host, tun))
            if other:
                p.add(f"{where}.tun", f"tun{tun} on {host} is already used by {other}")
            tuns_per_host[(host, tun)] = where
        links.append(LinkConfig((pair[0], pair[1]), tun, (str(a), str(b)), kind))

    networks: dict[str, NetworkConfig] = {}
    uses_robot = False
    for name, spec in _mapping(p, "glidepath:networks", raw.get("networks")).items():
        where = f"glidepath:networks.{name}"
        p.parse(where, validate.name, name, "network name")
        spec = _mapping(p, where, spec)
        _known_fields(p, where, spec, NETWORK_FIELDS)
        prefix = p.parse(f"{where}.prefix", _ipv4_prefix, spec.get("prefix"))
        if prefix:
            for tunnel_net, link in tunnel_networks:
                if ipaddress.ip_network(prefix).overlaps(tunnel_net):
                    p.add(f"{where}.prefix", f"{prefix} overlaps {link}'s tunnel {tunnel_net}")
        upstream = spec.get("upstream", "auto")
        if upstream != "auto" and (not isinstance(upstream, str) or upstream not in raw_hosts):
            p.add(f"{where}.upstream", f"{upstream!r} is neither 'auto' nor a host")
        cutover = _parse_cutover(
            p, f"{where}.cutover", spec.get("cutover", {"kind": "manual"}), prefix
        )
        uses_robot = uses_robot or (cutover is not None and cutover.kind == "hetzner-robot")
        mark = p.parse(f"{where}.mark", validate.integer, spec.get("mark", 1), 1, 0xFFFFFFFF)
        table = _mapping(p, f"{where}.table", spec.get("table", {}))
        _known_fields(p, f"{where}.table", table, ("id", "name"))
        table_id = p.parse(f"{where}.table.id", validate.table_id, table.get("id", 201))
        table_name = p.parse(
            f"{where}.table.name", validate.table_name, table.get("name", "vm-out")
        )
        priority = p.parse(
            f"{where}.rule_priority", validate.integer, spec.get("rule_priority", 1000), 1, 32765
        )
        if None in (prefix, cutover, mark, table_id, table_name, priority):
            continue
        assert cutover is not None
        networks[name] = NetworkConfig(
            name, prefix, upstream, cutover, mark, table_id, table_name, priority
        )
    if uses_robot and "robot" in raw:
        _parse_robot(p, raw["robot"], secrets)
    # Each network's egress path is its own on every host it reaches: two networks with
    # one mark, table or rule priority would fight over the same host artifact.
    for what, attribute in (
        ("mark", "mark"),
        ("table.id", "table_id"),
        ("table.name", "table_name"),
        ("rule_priority", "rule_priority"),
    ):
        owners: dict[Any, str] = {}
        for net in networks.values():
            value = getattr(net, attribute)
            if value in owners:
                p.add(f"glidepath:networks.{net.name}.{what}", f"{value} is also {owners[value]}'s")
            owners.setdefault(value, net.name)
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
    vifs_seen: dict[str, str] = {}
    disks_seen: dict[str, str] = {}
    for name, spec in _mapping(p, "glidepath:vms", raw.get("vms")).items():
        where = f"glidepath:vms.{name}"
        p.parse(where, validate.name, name, "VM name")
        spec = _mapping(p, where, spec)
        _known_fields(p, where, spec, VM_FIELDS)
        host = spec.get("host")
        if not isinstance(host, str) or host not in raw_hosts:
            p.add(f"{where}.host", f"{host!r} is not in glidepath:hosts")
        network = spec.get("network")
        if not isinstance(network, str) or network not in networks:
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
        vif = p.parse(f"{where}.vif", _vif, spec.get("vif"))
        if vif:
            # A vif name is a tap on whichever host the VM runs: unique fleet-wide.
            if vif in vifs_seen:
                p.add(f"{where}.vif", f"{vif} is also VM {vifs_seen[vif]}'s")
            vifs_seen.setdefault(vif, name)
        memory = p.parse(
            f"{where}.memory_mib", validate.integer, spec.get("memory_mib", 128), *MEMORY_MIB
        )
        disks: list[DiskConfig] = []
        raw_disks = spec.get("disks") or []
        if not isinstance(raw_disks, list):
            p.add(f"{where}.disks", "must be a list")
            raw_disks = []
        for index, disk in enumerate(raw_disks):
            dwhere = f"{where}.disks[{index}]"
            disk = _mapping(p, dwhere, disk)
            _known_fields(p, dwhere, disk, ("path", "size_mib"))
            path = p.parse(f"{dwhere}.path", validate.absolute_path, disk.get("path"))
            size = p.parse(f"{dwhere}.size_mib", _positive, disk.get("size_mib"), 1 << 24)
            if path:
                # Disks sit at the same path on every host: one path, one VM's disk.
                if path in disks_seen:
                    p.add(f"{dwhere}.path", f"{path} is also {disks_seen[path]}")
                disks_seen.setdefault(path, dwhere)
            if path and size:
                disks.append(DiskConfig(path, size))
        mig = _mapping(p, f"{where}.migration", spec.get("migration", {}))
        _known_fields(p, f"{where}.migration", mig, MIGRATION_FIELDS)
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
            auto_converge=p.parse(
                f"{where}.migration.auto_converge", _boolean, mig.get("auto_converge", True)
            ),
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
        if "cmdline" in boot:
            p.parse(f"{where}.boot.cmdline", _cmdline, boot["cmdline"])
        unknown = set(boot) - {"kernel", "initrd", "cmdline"}
        if unknown:
            p.add(f"{where}.boot", f"unknown fields {sorted(unknown)}")
        delete_disks = p.parse(f"{where}.delete_disks", _boolean, spec.get("delete_disks", False))
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
                bool(delete_disks),
            )

    if p.items:
        raise ConfigError(p.items)
    return StackConfig(hosts, tuple(links), networks, vms)


def load_config() -> StackConfig:
    """Read `glidepath:*` from the running stack (inside the Pulumi program)."""
    import pulumi
    from pulumi.runtime.config import is_config_secret

    config = pulumi.Config("glidepath")
    keys = ("hosts", "ssh", "links", "networks", "vms", "robot")
    # glidepath:ssh and glidepath:robot hold secrets: they are checked here (present,
    # well-formed, secret) but only the providers use them (configure()).
    raw = {key: config.get_object(key) for key in keys}
    secrets = {key for key in keys if is_config_secret(f"glidepath:{key}")}
    return parse_config(raw, secrets)


def load_access() -> tuple[Any, Any]:
    """`glidepath:ssh` and `glidepath:robot` as stored (secrets decrypted), for the few
    reads the program makes itself (components/routed.py); never printed or exported."""
    import pulumi

    config = pulumi.Config("glidepath")
    return config.get_object("ssh"), config.get_object("robot")
