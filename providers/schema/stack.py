"""The stack config (`glidepath:*`): each resource's inputs as a user writes them once, and
the rules between entries (one address per host, one tun per host and number, ...).

`Stack` validates a whole stack; `Parts` holds what validated of it (every entry that did
on its own, where some did not), and `across` checks the rules between entries on that,
so a stack with several mistakes is told all of them at once.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from operator import attrgetter
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.json_schema import GenerateJsonSchema

from providers import validate
from providers.schema.errors import Problem
from providers.schema.fields import (
    Between,
    Boolean,
    HostName,
    Ipv4Prefix,
    Mark,
    Model,
    NetworkName,
    TunnelAddress,
    VmName,
    at,
)
from providers.schema.host import DEFAULT_USER, Host, Keyed, Ssh
from providers.schema.policy_rule import Priority
from providers.schema.routing_table import TableId, TableName
from providers.schema.tunnel import Tun, check_ends
from providers.schema.upstream import Cutover, HetznerRobotCutover, ManualCutover, Robot
from providers.schema.vm_placement import DEFINITION_FIELDS, VmSpec
from providers.validate import Invalid

DEFAULT_MARK = 1
DEFAULT_TABLE_ID = 201
DEFAULT_TABLE_NAME = "vm-out"
DEFAULT_RULE_PRIORITY = 1000


class Table(Model):
    """The routing table of the network's egress through its upstream (`201 vm-out`)."""

    id: TableId = DEFAULT_TABLE_ID
    name: TableName = DEFAULT_TABLE_NAME


def _two_hosts(hosts: tuple[str, str]) -> tuple[str, str]:
    if hosts[0] == hosts[1]:
        raise Invalid("must name two different hosts")
    return hosts


def _one_network(addresses: tuple[str, str]) -> tuple[str, str]:
    check_ends(*addresses)
    return addresses


class Link(Model):
    """An `ssh -w` tunnel: hosts[0] runs ssh; addresses[i] goes on hosts[i]'s tunN."""

    hosts: Annotated[tuple[str, str], AfterValidator(_two_hosts)]
    kind: Literal["ssh-tun"] = "ssh-tun"
    tun: Tun
    addresses: Annotated[tuple[TunnelAddress, TunnelAddress], AfterValidator(_one_network)]

    @property
    def name(self) -> str:
        return f"{self.hosts[0]}-{self.hosts[1]}-tun{self.tun}"

    def address_of(self, host: str) -> str:
        return self.addresses[self.hosts.index(host)]

    def peer_of(self, host: str) -> str:
        return self.hosts[1 - self.hosts.index(host)]


class Network(Keyed):
    """A routed prefix, its upstream host, and how the provider is told to switch it."""

    prefix: Ipv4Prefix
    """An IPv4 prefix the provider routes to one host; every address of it is a VM's."""
    upstream: str = "auto"
    """A host, or `auto`: the host where all the network's VMs are."""
    cutover: Cutover = ManualCutover(kind="manual")
    mark: Mark = DEFAULT_MARK
    """The fwmark of the network's egress on the hosts that are not its upstream."""
    table: Table = Table()
    rule_priority: Priority = DEFAULT_RULE_PRIORITY
    #: Above the /32 vif routes (metric 0) so a VM's own host route always wins.
    tunnel_route_metric: ClassVar[int] = 100

    @property
    def table_id(self) -> int:
        return self.table.id

    @property
    def table_name(self) -> str:
        return self.table.name


class Vm(VmSpec, Keyed):
    """A VM, and where it runs: `host` is the line a user changes to move it."""

    host: str
    """A host of glidepath:hosts; changing it live-migrates the VM."""
    network: str
    """A network of glidepath:networks; the VM's address is in its prefix."""
    protect: Boolean = False
    """Pulumi's `protect` on its placement: removing it from the stack, or destroying the
    stack, fails until `protect: false` is applied or `pulumi state unprotect` lifts it."""

    @model_validator(mode="after")
    def _adopted_keeps_its_definition(self) -> Vm:
        if self.adopt:
            given = [f for f in DEFINITION_FIELDS if f in self.model_fields_set]
            if given:
                raise at(
                    *(
                        (field, "an adopted VM keeps its own definition: remove this line")
                        for field in given
                    )
                )
        return self


def _some(hosts: dict[str, Host]) -> dict[str, Host]:
    if not hosts:
        raise Invalid("at least one host is required")
    return hosts


#: The Python dynamic-provider server runs four calls at once (README, Engine notes): more
#: moves at once than that would wait there anyway.
MAX_MOVES_AT_ONCE = 4


class Moves(Model):
    """How the VMs that move in one `up` are scheduled."""

    at_once: Annotated[int, Between(1, MAX_MOVES_AT_ONCE)] = 1
    """How many migrate at the same time. 1 (the default): one after another, the smallest
    gaps (docs/moving.md says what was measured); at most 4, the engine's own limit."""


class Stack(Model):
    """glidepath's stack config: the hypervisors, the tunnels between them, the routed
    networks and the VMs (glidepath:hosts, ...), and the credentials its providers use."""

    hosts: Annotated[dict[HostName, Host], AfterValidator(_some)] = Field(
        default_factory=dict, validate_default=True
    )
    ssh: Ssh | None = None
    links: list[Link] = Field(default_factory=list)
    networks: dict[NetworkName, Network] = Field(default_factory=dict)
    vms: dict[VmName, Vm] = Field(default_factory=dict)
    moves: Moves = Moves()
    robot: Robot | None = None
    """Credentials of the hetzner-robot cutover."""

    @model_validator(mode="before")
    @classmethod
    def _ssh_user_is_the_hosts(cls, data: Any) -> Any:
        if not (isinstance(data, dict) and isinstance(data.get("hosts"), dict)):
            return data
        ssh = data.get("ssh")
        try:
            user = validate.name(ssh.get("user", DEFAULT_USER) if isinstance(ssh, dict) else None)
        except Invalid:
            return data  # glidepath:ssh.user says what is wrong; the hosts keep the default
        hosts = {
            name: {"user": user, **spec} if isinstance(spec, dict) else spec
            for name, spec in data["hosts"].items()
        }
        return {**data, "hosts": hosts}

    @field_validator("ssh", mode="before")
    @classmethod
    def _ssh_is_set(cls, ssh: Any) -> Any:
        if ssh is None:  # given, as null: `load_config` gives every key
            raise Invalid(
                "is not set: it needs private_key (a secret) or private_key_path, "
                "and known_hosts or known_hosts_path"
            )
        return ssh

    @model_validator(mode="after")
    def _named(self) -> Stack:
        for name, entry in [*self.hosts.items(), *self.networks.items(), *self.vms.items()]:
            entry.named(name)
        return self

    def vms_of(self, network: str) -> list[Vm]:
        return [vm for vm in self.vms.values() if vm.network == network]

    def link_between(self, a: str, b: str) -> Link | None:
        return next((link for link in self.links if set(link.hosts) == {a, b}), None)

    def tunnel_addresses(self) -> dict[str, dict[str, str]]:
        """[host][peer]: host's address on its link with peer (a VmPlacement input)."""
        found: dict[str, dict[str, str]] = {}
        for link in self.links:
            for host in link.hosts:
                found.setdefault(host, {})[link.peer_of(host)] = link.address_of(host)
        return found


M = TypeVar("M", bound=BaseModel)


def _valid(model: type[M], value: Any) -> M | None:
    try:
        return model.model_validate(value)
    except ValidationError:
        return None


@dataclass(frozen=True)
class Parts:
    """What validated of a stack: all of it, or each entry that did on its own."""

    hosts: Mapping[str, Host]
    links: Mapping[int, Link]
    networks: Mapping[str, Network]
    vms: Mapping[str, Vm]
    ssh: Ssh | None
    robot: Robot | None
    #: Every name given, valid or not: what an entry may refer to.
    host_names: frozenset[Any]
    network_names: frozenset[Any]
    #: glidepath:robot given, but as null (load_config gives every key).
    robot_null: bool

    @staticmethod
    def of(stack: Stack) -> Parts:
        return Parts(
            stack.hosts,
            dict(enumerate(stack.links)),
            stack.networks,
            stack.vms,
            stack.ssh,
            stack.robot,
            frozenset(stack.hosts),
            frozenset(stack.networks),
            "robot" in stack.model_fields_set and stack.robot is None,
        )

    @staticmethod
    def salvage(raw: Mapping[str, Any]) -> Parts:
        def each(model: type[M], entries: Any) -> dict[Any, M]:
            if isinstance(entries, list):
                entries = dict(enumerate(entries))
            if not isinstance(entries, dict):
                return {}
            valid = {key: _valid(model, value) for key, value in entries.items()}
            return {key: value for key, value in valid.items() if value is not None}

        def names(entries: Any) -> frozenset[Any]:
            return frozenset(entries) if isinstance(entries, dict) else frozenset()

        return Parts(
            each(Host, raw.get("hosts")),
            each(Link, raw.get("links")),
            each(Network, raw.get("networks")),
            each(Vm, raw.get("vms")),
            _valid(Ssh, raw.get("ssh")),
            _valid(Robot, raw.get("robot")),
            names(raw.get("hosts")),
            names(raw.get("networks")),
            "robot" in raw and raw["robot"] is None,
        )

    @property
    def uses_robot(self) -> bool:
        return any(isinstance(n.cutover, HetznerRobotCutover) for n in self.networks.values())


def _again(owners: dict[Any, str], value: Any, owner: str) -> str | None:
    """Who had `value` before `owner` (None: `owner` is the first)."""
    first = owners.setdefault(value, owner)
    return None if first == owner else first


def across(parts: Parts) -> list[Problem]:
    """The rules between entries; each entry's own fields are its model's."""
    found: list[Problem] = []
    addresses: dict[Any, str] = {}
    for name, host in parts.hosts.items():
        if other := _again(addresses, host.address, name):
            found.append((f"hosts.{name}.address", f"{host.address} is also host {other}'s"))
    # The provider routes the prefix to a main IP, and glidepath tells the hosts apart by
    # it: one per host. Two equal addresses without main_ip are reported above.
    mains: dict[str, str] = {}
    for name, host in parts.hosts.items():
        other = _again(mains, host.main_address, name)
        if other is None or not (host.main_ip or parts.hosts[other].main_ip):
            continue
        where = name if host.main_ip else other
        found.append(
            (
                f"hosts.{where}.main_ip",
                f"{host.main_address} is also host {other if where == name else name}'s "
                "main IP (where the provider routes the prefix)",
            )
        )

    tuns: dict[Any, str] = {}
    tunnels: dict[ipaddress.IPv4Network | ipaddress.IPv6Network, str] = {}
    for index, link in parts.links.items():
        where = f"links[{index}]"
        for end in link.hosts:
            if end not in parts.host_names:
                found.append((f"{where}.hosts", f"{end!r} is not in glidepath:hosts"))
        network = ipaddress.ip_interface(link.addresses[0]).network
        for tunnel, used_by in tunnels.items():
            if network.overlaps(tunnel):
                found.append((f"{where}.addresses", f"{network} overlaps {used_by}'s {tunnel}"))
        tunnels[network] = f"glidepath:{where}"
        for end in link.hosts:
            if other := _again(tuns, (end, link.tun), f"glidepath:{where}"):
                found.append((f"{where}.tun", f"tun{link.tun} on {end} is already used by {other}"))

    for name, net in parts.networks.items():
        prefix = ipaddress.ip_network(net.prefix)
        for tunnel, link_name in tunnels.items():
            if prefix.overlaps(tunnel):
                found.append(
                    (f"networks.{name}.prefix", f"{prefix} overlaps {link_name}'s tunnel {tunnel}")
                )
        if net.upstream != "auto" and net.upstream not in parts.host_names:
            found.append(
                (f"networks.{name}.upstream", f"{net.upstream!r} is neither 'auto' nor a host")
            )
    if parts.uses_robot and parts.robot_null:
        found.append(
            ("robot", "is not set: the hetzner-robot cutover needs {user, password} as secrets")
        )
    # Each network's egress path is its own on every host it reaches: two networks with
    # one mark, table or rule priority would fight over the same host artifact.
    for what in ("mark", "table.id", "table.name", "rule_priority"):
        owners: dict[Any, str] = {}
        for name, net in parts.networks.items():
            value = attrgetter(what)(net)
            if other := _again(owners, value, name):
                found.append((f"networks.{name}.{what}", f"{value} is also {other}'s"))
    nets = list(parts.networks.items())
    for index, (first_name, first) in enumerate(nets):
        for name, net in nets[index + 1 :]:
            if ipaddress.ip_network(first.prefix).overlaps(ipaddress.ip_network(net.prefix)):
                found.append(
                    (
                        f"networks.{name}.prefix",
                        f"{net.prefix} overlaps {first_name}'s {first.prefix}",
                    )
                )

    ips: dict[Any, str] = {}
    vifs: dict[Any, str] = {}
    disks: dict[Any, str] = {}
    for name, vm in parts.vms.items():
        where = f"vms.{name}"
        if vm.host not in parts.host_names:
            found.append((f"{where}.host", f"{vm.host!r} is not in glidepath:hosts"))
        if vm.network not in parts.network_names:
            found.append((f"{where}.network", f"{vm.network!r} is not in glidepath:networks"))
        elif vm.network in parts.networks:
            # Every address of the prefix is a VM's, the network and broadcast addresses
            # too: each VM is a /32 routed to its tap, so there is no broadcast domain
            # (the blog's point: a /29 holds eight VMs on vif0..vif7, none wasted).
            prefix = ipaddress.ip_network(parts.networks[vm.network].prefix)
            if ipaddress.ip_address(vm.ip) not in prefix:
                found.append((f"{where}.ip", f"{vm.ip} is outside {vm.network}'s prefix {prefix}"))
        if other := _again(ips, vm.ip, name):
            found.append((f"{where}.ip", f"{vm.ip} is also VM {other}'s"))
        # A vif name is a tap on whichever host the VM runs: unique fleet-wide.
        if other := _again(vifs, vm.vif, name):
            found.append((f"{where}.vif", f"{vm.vif} is also VM {other}'s"))
        for index, disk in enumerate(vm.disks):
            # Disks sit at the same path on every host: one path, one VM's disk.
            if other := _again(disks, disk.path, f"glidepath:{where}.disks[{index}]"):
                found.append((f"{where}.disks[{index}].path", f"{disk.path} is also {other}"))
    return found


class _Untitled(GenerateJsonSchema):
    # A field's title would only repeat its name.
    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def document_schema() -> dict[str, Any]:
    """The JSON schema of a stack file's `config:` section (`glidepath:hosts`, ...)."""
    schema = Stack.model_json_schema(schema_generator=_Untitled)
    keys = [f"glidepath:{key}" for key in schema["properties"]]
    schema["properties"] = dict(zip(keys, schema["properties"].values(), strict=True))
    # Other namespaces' keys may sit beside glidepath's; a misspelt glidepath key may not.
    del schema["additionalProperties"]
    schema["propertyNames"] = {"anyOf": [{"enum": keys}, {"not": {"pattern": "^glidepath:"}}]}
    schema["title"] = "glidepath stack config"
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
