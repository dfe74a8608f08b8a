"""stacks/Pulumi.hetzner-example.yaml, the blog's setup, passes what a preview checks.

No host and no engine: the stack file is read as YAML, its secrets must be `secure:`
entries (their plaintext never in the file), and the program runs under mocks so that
parse_config, every provider's configure and check, and the Robot backend's own settings
check see exactly the inputs a `pulumi preview` would give them (tests/support/
preview_checks.py). tests/engine/test_hetzner_example_secrets.py decrypts the secrets with
the real CLI and runs the same checks on them.
"""

from __future__ import annotations

import copy
import io
import ipaddress
from collections.abc import Mapping
from typing import Any

import paramiko
import pytest
import yaml

from components.config import parse_config
from engine import PROJECT_ROOT
from providers import transport, validate
from providers.cutover import backend_for
from providers.cutover.hetzner_robot import HetznerRobot
from tests.support.preview_checks import Declared, run_preview_checks

pytestmark = [pytest.mark.unit]

STACK_FILE = PROJECT_ROOT / "stacks" / "Pulumi.hetzner-example.yaml"
SECRETS = (
    ("glidepath:ssh", "private_key"),
    ("glidepath:robot", "user"),
    ("glidepath:robot", "password"),
)


def placeholders() -> dict[str, str]:
    """Stand-ins for the decrypted values, shaped like real ones (a usable key: a check
    may parse it)."""
    key = io.StringIO()
    paramiko.ECDSAKey.generate().write_private_key(key)
    return {"private_key": key.getvalue(), "user": "#ws+placeholder", "password": "placeholder"}


VMS = [
    ("www", "vif0"),
    ("blog", "vif1"),
    ("mail", "vif2"),
    ("git", "vif3"),
    ("db", "vif4"),
    ("dns", "vif5"),
    ("vpn", "vif6"),
    ("backup", "vif7"),
]


def stack_document() -> dict[str, Any]:
    document = yaml.safe_load(STACK_FILE.read_text())
    assert isinstance(document, dict)
    return document


def with_placeholders(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config as the providers receive it, with placeholders for the secure values."""
    copied = copy.deepcopy(dict(config))
    values = placeholders()
    for key, field in SECRETS:
        copied[key][field] = values[field]
    return copied


def short(config: Mapping[str, Any]) -> dict[str, Any]:
    return {key.split(":", 1)[1]: value for key, value in config.items()}


def by_kind(declared: list[Declared], kind: str) -> list[Declared]:
    return [d for d in declared if d.kind == kind]


def test_secrets_are_secure_entries_with_a_salt() -> None:
    document = stack_document()
    config = document["config"]
    for key, field in SECRETS:
        value = config[key][field]
        assert set(value) == {"secure"}, f"{key}.{field} must be a secret (secure: ...)"
        assert value["secure"].startswith("v1:"), f"{key}.{field} is not a Pulumi ciphertext"
    assert str(document.get("encryptionsalt", "")).startswith("v1:")
    assert "PRIVATE KEY" not in STACK_FILE.read_text()


def test_the_blog_setup_parses() -> None:
    config = parse_config(short(stack_document()["config"]))
    assert sorted(config.hosts) == ["new", "old"]
    (link,) = config.links
    assert (link.kind, link.tun, link.hosts) == ("ssh-tun", 2, ("old", "new"))
    assert link.addresses == ("192.168.0.1/24", "192.168.0.2/24")
    (network,) = config.networks.values()
    prefix = ipaddress.ip_network(network.prefix)
    assert prefix.prefixlen == 29
    assert (network.table_id, network.table_name, network.mark) == (201, "vm-out", 1)
    assert network.upstream == "auto"
    assert network.cutover.kind == "hetzner-robot"
    assert [(vm.name, vm.vif) for vm in config.vms.values()] == VMS
    # Host routing wastes no address: the /29's eight addresses are the eight VMs.
    assert [vm.ip for vm in config.vms.values()] == [str(ip) for ip in prefix]
    assert {vm.host for vm in config.vms.values()} == {"old"}


def test_disks_are_the_blog_s_lvm_volumes_one_volume_group_per_vm() -> None:
    # "The VMs are running on LVMs which themself are running on crypto devices. Each VM
    # has its own LVM group."
    config = parse_config(short(stack_document()["config"]))
    volumes = {
        name: [(validate.lvm_volume(d.path), d.kind, d.create) for d in vm.disks]
        for name, vm in config.vms.items()
    }
    assert volumes["db"] == [(("db", "root"), "block", None), (("db", "data"), "block", None)]
    assert volumes["backup"] == [(("backup", "disk"), "block", "lvcreate")]
    for name, disks in volumes.items():
        if name not in ("db", "backup"):
            assert disks == [((name, "disk"), "block", None)], name
    assert not any(vm.delete_disks for vm in config.vms.values())


def test_ssh_and_robot_settings_are_usable() -> None:
    config = with_placeholders(stack_document()["config"])
    credentials = transport.credentials_from_config(config["glidepath:ssh"])
    known = transport._host_keys(credentials.known_hosts)
    for host in config["glidepath:hosts"].values():
        assert known.lookup(host["address"]) is not None, f"no host key for {host['address']}"
    cutover = {"kind": "hetzner-robot", **config["glidepath:networks"]["net0"]["cutover"]}
    robot = HetznerRobot(cutover, "203.0.113.0/29", config["glidepath:robot"])
    assert (robot.base_url, robot.failover_ip) == ("https://robot-ws.your-server.de", "203.0.113.0")


def check_stack(config: Mapping[str, Any]) -> list[Declared]:
    """Everything a preview of `config` checks; asserts that all of it passes."""
    declared = run_preview_checks(config, stack="hetzner-example")
    dynamic = [d for d in declared if d.provider is not None]
    assert dynamic, "the program declared no resources"
    failures = {d.name: d.failures for d in dynamic if d.failures}
    assert failures == {}
    for d in dynamic:
        assert getattr(d.provider, "_credentials", None) is not None, (
            d.name
        )  # configure() took glidepath:ssh
    (upstream,) = by_kind(declared, "Upstream")
    # What the Upstream's update builds at the cutover, from its checked inputs.
    backend = backend_for(
        upstream.checked["cutover"], upstream.checked["prefix"], upstream.provider
    )
    assert backend.kind == "hetzner-robot"
    return declared


def test_a_preview_of_the_stack_passes_every_check() -> None:
    declared = check_stack(with_placeholders(stack_document()["config"]))
    placements = by_kind(declared, "VmPlacement")
    # Registration order is the engine's (async): compare as sets.
    assert sorted((p.checked["name"], p.checked["vif"]) for p in placements) == sorted(VMS)
    # The placements get the volumes as the stack gives them, `create` only where set.
    disks = {p.checked["name"]: p.checked["disks"] for p in placements}
    assert disks["blog"] == [{"path": "/dev/blog/disk", "size_mib": 20480}]
    assert disks["backup"] == [
        {"path": "/dev/backup/disk", "size_mib": 204800, "create": "lvcreate"}
    ]
    assert {p.checked["host"]["name"] for p in placements} == {"old"}
    (script_old, script_new) = sorted(by_kind(declared, "VifRouteScript"), key=lambda d: d.name)
    expected_routes = {vif: f"203.0.113.{i}" for i, (_, vif) in enumerate(VMS)}
    assert script_old.checked["routes"] == script_new.checked["routes"] == expected_routes
    # Shared with any other stack on the hosts: each holds them as itself.
    shared = [script_old, script_new, *by_kind(declared, "Sysctl")]
    assert {d.checked["owner"] for d in shared} == {"glidepath.hetzner-example"}
    (tunnel,) = by_kind(declared, "Tunnel")
    assert (tunnel.checked["tun"], tunnel.checked["address"], tunnel.checked["peer_address"]) == (
        2,
        "192.168.0.1/24",
        "192.168.0.2/24",
    )
    # All VMs on old: old is the upstream; new gets the blog's egress path, ready.
    (table,) = by_kind(declared, "RoutingTable")
    assert (table.checked["table_id"], table.checked["name"]) == (201, "vm-out")
    (rule,) = by_kind(declared, "PolicyRule")
    assert (rule.checked["fwmark"], rule.checked["table"]) == (1, 201)
    (mark,) = by_kind(declared, "MangleMark")
    assert mark.checked["mark"] == 1 and mark.checked["host"]["name"] == "new"
    routes = {d.name: d.checked for d in by_kind(declared, "Route")}
    assert routes["net0-new-egress"]["via"] == "192.168.0.1"
    assert routes["net0-new-egress"]["table"] == 201
    assert routes["net0-old-follow"]["dst"] == "203.0.113.0/29"
    (upstream,) = by_kind(declared, "Upstream")
    assert upstream.checked["upstream"] == "old"


def test_moving_the_whole_29_to_new_passes_every_check() -> None:
    # The user's edit: every `host: old` -> `host: new`. The config alone decides the
    # upstream (all VMs on new), so the program reads nothing from Robot or the hosts.
    config = with_placeholders(stack_document()["config"])
    for vm in config["glidepath:vms"].values():
        vm["host"] = "new"
    declared = check_stack(config)
    placements = by_kind(declared, "VmPlacement")
    assert {p.checked["host"]["name"] for p in placements} == {"new"}
    (upstream,) = by_kind(declared, "Upstream")
    assert (upstream.checked["upstream"], upstream.checked["marked"]) == ("new", ["old"])
    (mark,) = by_kind(declared, "MangleMark")
    assert mark.checked["host"]["name"] == "old"
