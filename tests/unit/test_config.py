"""The stack config parser: the blog's stack parses; mistakes name their field."""

from __future__ import annotations

import copy
import functools
import io
import json
from typing import Any

import paramiko
import pytest

from components.config import KEYS, ConfigError, parse_config
from components.vm import VirtualMachine
from tests.engine import test_bad_input as bad_input
from tests.support.netns_sshd import SshHost, host_address

pytestmark = [pytest.mark.unit]

GOOD: dict[str, Any] = {
    "hosts": {
        "old": {"address": "198.18.1.2", "uplink": "br0"},
        "new": {"address": "198.18.2.2", "uplink": "br0"},
    },
    "links": [
        {"hosts": ["old", "new"], "tun": 2, "addresses": ["198.18.100.1/24", "198.18.100.2/24"]}
    ],
    "networks": {
        "net0": {
            "prefix": "203.0.113.0/29",
            "upstream": "auto",
            "cutover": {"kind": "lab-router", "router": {"name": "core", "address": "198.18.0.2"}},
            "mark": 1,
            "table": {"id": 201, "name": "vm-out"},
        }
    },
    "vms": {
        "blog": {
            "host": "old",
            "network": "net0",
            "ip": "203.0.113.2",
            "vif": "vif0",
            "memory_mib": 128,
            "disks": [{"path": "/var/lib/libvirt/images/blog.img", "size_mib": 64}],
        }
    },
}


def test_blog_stack_parses() -> None:
    config = parse_config(GOOD)
    assert config.hosts["new"].address == "198.18.2.2"
    assert config.links[0].address_of("new") == "198.18.100.2/24"
    assert config.networks["net0"].table_name == "vm-out"
    assert config.vms["blog"].migration.max_downtime_ms == 100


def _broken(path: list[Any], value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(GOOD)
    target = raw
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return raw


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (["vms", "blog", "ip"], "203.0.113.9", "glidepath:vms.blog.ip"),
        (["vms", "blog", "host"], "nowhere", "glidepath:vms.blog.host"),
        (["vms", "blog", "vif"], "vif0;reboot", "glidepath:vms.blog.vif"),
        # A Python regex's `$` also matches before a final newline: names are fullmatched.
        (["vms", "blog", "vif"], "vif0\n", "glidepath:vms.blog.vif"),
        (["vms", "blog", "network"], "net0\n", "glidepath:vms.blog.network"),
        (["hosts", "old", "user"], "root\n", "glidepath:hosts.old.user"),
        (["networks", "net0", "prefix"], "203.0.113.1/29", "glidepath:networks.net0.prefix"),
        (["networks", "net0", "table"], {"id": 300}, "glidepath:networks.net0.table.id"),
        (["hosts", "new", "address"], "198.18.1.2", "glidepath:hosts.new.address"),
    ],
)
def test_mistakes_name_their_field(path: list[Any], value: Any, field: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(_broken(path, value))
    assert any(problem.startswith(field) for problem in raised.value.problems), raised.value


def test_all_eight_addresses_of_a_29_are_vms() -> None:
    # The blog routes each VM's /32 to its tap: no broadcast domain, so the network and
    # broadcast addresses are VMs like the others (x0 on vif0 ... x7 on vif7).
    raw = copy.deepcopy(GOOD)
    raw["vms"] = {
        f"vm{i}": {
            **GOOD["vms"]["blog"],
            "ip": f"203.0.113.{i}",
            "vif": f"vif{i}",
            "disks": [{"path": f"/var/lib/libvirt/images/vm{i}.img", "size_mib": 64}],
        }
        for i in range(8)
    }
    config = parse_config(raw)
    assert [vm.ip for vm in config.vms.values()] == [f"203.0.113.{i}" for i in range(8)]


# --- mistakes parse_config used to let through (issue 7); each names its field ---------

KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEA\n-----END OPENSSH PRIVATE KEY-----\n"
)
KNOWN = (
    "198.18.1.2 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDpns/U/DRP/Z/UiEI134fh/nFvoRD0XulmGYl+LmJxk\n"
)
WITH_SSH: dict[str, Any] = {
    **GOOD,
    "ssh": {"user": "root", "private_key": KEY, "known_hosts_path": "/etc/ssh/known"},
}
NET1 = {
    "prefix": "198.51.100.0/29",
    "cutover": {"kind": "manual"},
    "mark": 2,
    "table": {"id": 202, "name": "vm-out1"},
    "rule_priority": 1001,
}


def _with(raw: dict[str, Any], path: list[Any], value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(raw)
    target = raw
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return raw


def _second_vm(**changes: Any) -> dict[str, Any]:
    raw = copy.deepcopy(GOOD)
    raw["vms"]["www"] = {
        **raw["vms"]["blog"],
        "ip": "203.0.113.3",
        "vif": "vif1",
        "disks": [{"path": "/var/lib/libvirt/images/www.img", "size_mib": 64}],
        **changes,
    }
    return raw


def _second_network(**changes: Any) -> dict[str, Any]:
    raw = copy.deepcopy(GOOD)
    raw["networks"]["net1"] = {**NET1, **changes}
    return raw


def _problems(raw: dict[str, Any], secrets: Any = None) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        parse_config(raw, secrets)
    return raised.value.problems


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        # ssh: missing, or not usable
        ({**GOOD, "ssh": None}, "glidepath:ssh:"),
        (_with(WITH_SSH, ["ssh", "private_key"], None), "glidepath:ssh.private_key:"),
        (_with(WITH_SSH, ["ssh", "private_key"], "ssh-ed25519 AAAA"), "glidepath:ssh.private_key:"),
        (_with(WITH_SSH, ["ssh", "known_hosts_path"], None), "glidepath:ssh.known_hosts:"),
        (_with(WITH_SSH, ["ssh", "known_hosts_path"], "known"), "glidepath:ssh.known_hosts_path:"),
        (_with(WITH_SSH, ["ssh", "user"], "root;id"), "glidepath:ssh.user:"),
        (_with(WITH_SSH, ["ssh", "key"], "x"), "glidepath:ssh:"),
        # the network: one kind of address, its own mark, table and rule
        (
            _with(GOOD, ["networks", "net0", "prefix"], "2001:db8::/64"),
            "glidepath:networks.net0.prefix",
        ),
        (
            _with(GOOD, ["networks", "net0", "table", "name"], "main"),
            "glidepath:networks.net0.table.name",
        ),
        (_second_network(table={"id": 201, "name": "other"}), "glidepath:networks.net1.table.id"),
        (
            _second_network(table={"id": 203, "name": "vm-out"}),
            "glidepath:networks.net1.table.name",
        ),
        (_second_network(rule_priority=1000), "glidepath:networks.net1.rule_priority"),
        (_second_network(prefix="198.18.100.0/28"), "glidepath:networks.net1.prefix"),
        (
            _with(GOOD, ["networks", "net0", "cutover", "router"], None),
            "glidepath:networks.net0.cutover.router",
        ),
        (
            _with(GOOD, ["networks", "net0", "cutover", "first_packet_timeout_s"], "soon"),
            "glidepath:networks.net0.cutover.first_packet_timeout_s",
        ),
        (
            _with(GOOD, ["networks", "net0", "cutover", "routr"], "core"),
            "glidepath:networks.net0.cutover:",
        ),
        (_with(GOOD, ["networks", "net0", "mtu"], 1400), "glidepath:networks.net0:"),
        # links
        (
            _with(GOOD, ["links", 0, "addresses"], ["fd00::1/64", "fd00::2/64"]),
            "glidepath:links[0].addresses[0]",
        ),
        (
            _with(GOOD, ["links", 0, "addresses"], ["198.18.100.1/32", "198.18.100.1/32"]),
            "glidepath:links[0].addresses[0]",
        ),
        # VMs
        (_with(GOOD, ["vms", "blog", "memory_mib"], 64), "glidepath:vms.blog.memory_mib"),
        (_with(GOOD, ["vms", "blog", "vif"], "tap0"), "glidepath:vms.blog.vif"),
        (_with(GOOD, ["vms", "blog", "memroy_mib"], 256), "glidepath:vms.blog:"),
        (_with(GOOD, ["vms", "blog", "delete_disks"], "no"), "glidepath:vms.blog.delete_disks"),
        (
            _with(GOOD, ["vms", "blog", "migration"], {"auto_converge": "off"}),
            "glidepath:vms.blog.migration.auto_converge",
        ),
        (
            _with(GOOD, ["vms", "blog", "boot"], {"cmdline": "a\nb"}),
            "glidepath:vms.blog.boot.cmdline",
        ),
        (
            _with(
                GOOD,
                ["vms", "blog", "disks"],
                [{"path": "/d.img", "size_mib": 1}, {"path": "/d.img", "size_mib": 2}],
            ),
            "glidepath:vms.blog.disks[1].path",
        ),
        (
            _second_vm(disks=[{"path": "/var/lib/libvirt/images/blog.img", "size_mib": 64}]),
            "glidepath:vms.www.disks[0].path",
        ),
        # block devices: lvcreate only where the path names a VG and an LV it accepts
        (
            _with(GOOD, ["vms", "blog", "disks", 0, "create"], "lvcreate"),
            "glidepath:vms.blog.disks[0].create: lvcreate makes LVM volumes",
        ),
        (
            _with(
                GOOD,
                ["vms", "blog", "disks"],
                [{"path": "/dev/sdb", "size_mib": 64, "create": "lvcreate"}],
            ),
            "glidepath:vms.blog.disks[0].path: '/dev/sdb' is not an LVM volume path",
        ),
        (
            _with(
                GOOD,
                ["vms", "blog", "disks"],
                [{"path": "/dev/vg0/-blog", "size_mib": 64, "create": "lvcreate"}],
            ),
            "glidepath:vms.blog.disks[0].path: '-blog' in /dev/vg0/-blog is not a valid LV name",
        ),
        (
            _with(
                GOOD,
                ["vms", "blog", "disks"],
                [{"path": "/dev/vg0/blog_tmeta", "size_mib": 64, "create": "lvcreate"}],
            ),
            "glidepath:vms.blog.disks[0].path: LV name 'blog_tmeta'",
        ),
        (
            _with(GOOD, ["vms", "blog", "disks", 0, "create"], "yes"),
            "glidepath:vms.blog.disks[0].create: 'yes' is not 'lvcreate'",
        ),
        (
            _with(
                _with(
                    _with(
                        GOOD, ["vms", "blog", "disks"], [{"path": "/dev/vg0/blog", "size_mib": 64}]
                    ),
                    ["vms", "blog", "on_remove"],
                    "shutdown",
                ),
                ["vms", "blog", "delete_disks"],
                True,
            ),
            "glidepath:vms.blog.delete_disks: glidepath never removes block devices "
            "(/dev/vg0/blog)",
        ),
    ],
)
def test_more_mistakes_name_their_field(raw: dict[str, Any], field: str) -> None:
    problems = _problems(raw)
    assert any(problem.startswith(field) for problem in problems), problems


def test_block_disks_parse_and_their_controls() -> None:
    disks = [
        {"path": "/dev/vg0/blog", "size_mib": 64},  # the blog's: it exists on both hosts
        {"path": "/dev/blog/data", "size_mib": 1024, "create": "lvcreate"},
        {"path": "/dev/mapper/luks-data", "size_mib": 64},  # any block device, as it is
    ]
    config = parse_config(_with(GOOD, ["vms", "blog", "disks"], disks))
    parsed = config.vms["blog"].disks
    assert [(d.kind, d.create) for d in parsed] == [
        ("block", None),
        ("block", "lvcreate"),
        ("block", None),
    ]
    # An unset `create` is left out: a VM of file disks stores what it stored before.
    assert [d.model_dump() for d in parsed] == disks
    with_null = _with(GOOD, ["vms", "blog", "disks", 0, "create"], None)
    assert (
        parse_config(with_null).vms["blog"].disks[0].model_dump() == GOOD["vms"]["blog"]["disks"][0]
    )


def test_ssh_user_is_every_hosts_default() -> None:
    config = parse_config(_with(WITH_SSH, ["ssh", "user"], "admin"))
    assert {host.user for host in config.hosts.values()} == {"admin"}


def test_a_private_key_must_be_a_secret_and_is_never_echoed() -> None:
    assert parse_config(WITH_SSH, {"ssh"}).hosts
    problems = _problems(WITH_SSH, set())
    assert problems == [
        "glidepath:ssh.private_key: must be a secret "
        "(pulumi config set --secret --path glidepath:ssh.private_key)"
    ]
    bad_key = _with(WITH_SSH, ["ssh", "private_key"], "hunter2-not-a-key")
    assert "hunter2" not in "\n".join(_problems(bad_key, {"ssh"}))


def test_inline_known_hosts_must_name_every_host() -> None:
    raw = _with(WITH_SSH, ["ssh", "known_hosts_path"], None)
    raw["ssh"]["known_hosts"] = KNOWN
    assert _problems(raw, {"ssh"}) == [
        "glidepath:ssh.known_hosts: has no key for host new (198.18.2.2)"
    ]
    raw["ssh"]["known_hosts"] = KNOWN + KNOWN.replace("198.18.1.2", "198.18.2.2")
    assert parse_config(raw, {"ssh"}).hosts
    raw["ssh"]["known_hosts"] = "198.18.1.2 ssh-ed25519 !!!notbase64\n"
    assert _problems(raw, {"ssh"})[0].startswith("glidepath:ssh.known_hosts: ")


def test_hetzner_robot_needs_secret_credentials_and_a_sane_endpoint() -> None:
    raw = _with(GOOD, ["networks", "net0", "cutover"], {"kind": "hetzner-robot"})
    raw["robot"] = None
    assert _problems(raw) == [
        "glidepath:robot: is not set: the hetzner-robot cutover needs {user, password} as secrets"
    ]
    raw["robot"] = {"user": "#ws+abc", "password": "pw"}
    assert _problems(raw, set()) == [
        "glidepath:robot: must be a secret "
        "(pulumi config set --secret --path glidepath:robot.password)"
    ]
    assert parse_config(raw, {"robot"}).networks["net0"].cutover.kind == "hetzner-robot"
    raw["networks"]["net0"]["cutover"].update(
        base_url="http://robot.example", failover_ip="198.51.100.1", timeout_s=0
    )
    fields = [problem.split(":")[1] for problem in _problems(raw, {"robot"})]
    assert fields == [
        "networks.net0.cutover.base_url",
        "networks.net0.cutover.timeout_s",
        "networks.net0.cutover.failover_ip",
    ]


def test_main_ip_defaults_to_the_ssh_address() -> None:
    raw = _with(GOOD, ["hosts", "new", "main_ip"], " 198.51.100.20")
    config = parse_config(raw)
    assert (config.hosts["new"].address, config.hosts["new"].main_address) == (
        "198.18.2.2",
        "198.51.100.20",
    )
    assert config.hosts["old"].main_ip is None
    assert config.hosts["old"].main_address == "198.18.1.2"
    # SSH still goes to `address`; the Upstream gets main_ip only where it is set.
    assert config.hosts["new"].endpoint()["address"] == "198.18.2.2"
    assert config.hosts["new"].upstream_endpoint()["main_ip"] == "198.51.100.20"
    assert "main_ip" not in config.hosts["old"].upstream_endpoint()
    assert parse_config(_with(GOOD, ["hosts", "new", "main_ip"], "2001:db8::2")).hosts


@pytest.mark.parametrize(
    ("main_ips", "problem"),
    [
        ({"new": "198.51.100.300"}, "glidepath:hosts.new.main_ip: '198.51.100.300' is not an IP"),
        ({"new": "main"}, "glidepath:hosts.new.main_ip: 'main' is not an IP address"),
        (
            {"new": "198.18.1.2"},
            "glidepath:hosts.new.main_ip: 198.18.1.2 is also host old's main IP",
        ),
        (
            {"old": "198.18.2.2"},
            "glidepath:hosts.old.main_ip: 198.18.2.2 is also host new's main IP",
        ),
        (
            {"old": "198.51.100.9", "new": "198.51.100.9"},
            "glidepath:hosts.new.main_ip: 198.51.100.9 is also host old's main IP",
        ),
    ],
)
def test_a_wrong_main_ip_is_named(main_ips: dict[str, str], problem: str) -> None:
    raw = copy.deepcopy(GOOD)
    for host, main_ip in main_ips.items():
        raw["hosts"][host]["main_ip"] = main_ip
    problems = _problems(raw)
    assert len(problems) == 1, problems
    assert problems[0].startswith(problem), problems


def test_secure_entries_of_a_stack_file_count_as_set() -> None:
    # A stack file read as YAML holds secrets as {secure: v1:...}: present, not readable.
    raw = _with(WITH_SSH, ["ssh", "private_key"], {"secure": "v1:abc"})
    raw["networks"]["net0"]["cutover"] = {"kind": "hetzner-robot"}
    raw["robot"] = {"user": {"secure": "v1:def"}, "password": {"secure": "v1:ghi"}}
    assert parse_config(raw).vms["blog"].ip == "203.0.113.2"


def test_booleans_are_booleans() -> None:
    raw = _with(GOOD, ["vms", "blog", "delete_disks"], "false")
    raw["vms"]["blog"]["migration"] = {"auto_converge": False}
    vm = parse_config(raw).vms["blog"]
    assert (vm.delete_disks, vm.migration.auto_converge) == (False, False)


def test_a_vm_is_released_unless_the_stack_says_shut_it_down() -> None:
    vm = parse_config(GOOD).vms["blog"]
    assert (vm.on_remove, vm.shutdown_timeout_s, vm.delete_disks, vm.protect) == (
        "release",
        120,
        False,
        False,
    )
    raw = _with(GOOD, ["vms", "blog", "on_remove"], "shutdown")
    raw["vms"]["blog"].update(shutdown_timeout_s=300, delete_disks=True, protect=True)
    vm = parse_config(raw).vms["blog"]
    assert (vm.on_remove, vm.shutdown_timeout_s, vm.delete_disks, vm.protect) == (
        "shutdown",
        300,
        True,
        True,
    )


def test_deleting_the_disks_of_a_vm_that_runs_on_is_refused_naming_both_fields() -> None:
    raw = _with(GOOD, ["vms", "blog", "delete_disks"], True)
    assert _problems(raw) == [
        "glidepath:vms.blog.delete_disks: true needs on_remove: shutdown; with on_remove: "
        "release the VM keeps running on these disks"
    ]


def test_the_placement_is_protected_where_the_stack_says() -> None:
    raw = _with(GOOD, ["vms", "blog", "protect"], True)
    opts = VirtualMachine.placement_options(parse_config(raw).vms["blog"], None, [])
    assert opts.protect is True
    opts = VirtualMachine.placement_options(parse_config(GOOD).vms["blog"], None, [])
    assert opts.protect is False


# --- every case of tests/engine/test_bad_input.py, here without the engine ---------------


@functools.cache
def _bad_input_workspace() -> Any:
    """test_bad_input's Workspace, with stand-ins for its sshd and its ciphertexts."""
    key = io.StringIO()
    paramiko.RSAKey.generate(1024).write_private_key(key)
    addresses = tuple(host_address(index) for index in range(3))
    host = SshHost(
        namespace="none",
        address=addresses[0],
        private_key=key.getvalue(),
        known_hosts="".join(f"{address} {bad_input.PUBLIC_KEY}\n" for address in addresses),
        addresses=addresses,
    )
    names = ("private_key", "user", "password", "not_a_key")
    secure = {name: {"secure": f"v1:{name}"} for name in names}
    return bad_input.Workspace(None, None, "", secure, host)  # type: ignore[arg-type]


def _as_the_program_reads_it(workspace: Any, config: dict[str, Any]) -> tuple[Any, set[str]]:
    """What load_config gives parse_config for a stack file's `config:`: every key (null
    where unset), objects with sorted keys (as the engine hands them over), the secrets
    decrypted, and the keys that hold one."""
    plain = {
        "v1:private_key": workspace.host.private_key,
        "v1:user": "#ws+glidepath",
        "v1:password": "not-the-password",
        "v1:not_a_key": bad_input.PUBLIC_KEY,
    }

    def decrypted(value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {"secure"}:
                return plain[value["secure"]]
            return {key: decrypted(item) for key, item in value.items()}
        return [decrypted(item) for item in value] if isinstance(value, list) else value

    def holds_a_secret(value: Any) -> bool:
        if isinstance(value, dict):
            return set(value) == {"secure"} or any(map(holds_a_secret, value.values()))
        return isinstance(value, list) and any(map(holds_a_secret, value))

    given = json.loads(json.dumps(config, sort_keys=True))
    raw = {key: decrypted(given.get(f"glidepath:{key}")) for key in KEYS}
    return raw, {key for key in KEYS if holds_a_secret(given.get(f"glidepath:{key}"))}


def test_the_bad_input_control_stack_parses() -> None:
    workspace = _bad_input_workspace()
    raw, secrets = _as_the_program_reads_it(workspace, workspace.good_config())
    assert secrets == {"ssh"}
    assert sorted(parse_config(raw, secrets).hosts) == ["new", "old", "spare"]


@pytest.mark.parametrize(("field", "edits"), bad_input.CASES)
def test_each_bad_input_case_names_its_field(field: str, edits: list[Any]) -> None:
    workspace = _bad_input_workspace()
    config = bad_input._resolve(workspace, bad_input._edited(workspace.good_config(), edits))
    with pytest.raises(ConfigError) as raised:
        parse_config(*_as_the_program_reads_it(workspace, config))
    message = str(raised.value)
    assert f"{field}:" in message, message
    assert bad_input._key_material(workspace.host)[100:160] not in message
    assert "not-the-password" not in message


def test_several_mistakes_are_told_at_once() -> None:
    raw = _with(GOOD, ["vms", "blog", "memory_mib"], 64)
    raw["hosts"]["new"]["address"] = "198.18.1.2"
    raw["networks"]["net0"]["mtu"] = 1400
    assert _problems(raw) == [
        "glidepath:networks.net0: unknown fields ['mtu'] (known: cutover, mark, prefix, "
        "rule_priority, table, upstream)",
        "glidepath:vms.blog.memory_mib: must be an integer from 96 to 4194304, got 64",
        "glidepath:hosts.new.address: 198.18.1.2 is also host old's",
    ]


def test_null_is_an_empty_mapping_or_list_as_before() -> None:
    raw = copy.deepcopy(GOOD)
    raw["vms"]["blog"].update(boot=None, migration=None, disks=None)
    raw["networks"]["net0"]["table"] = None
    raw["links"] = None
    config = parse_config(raw)
    assert (config.vms["blog"].boot, config.vms["blog"].disks, config.links) == ({}, [], [])
    assert config.networks["net0"].table_name == "vm-out"
    assert _problems(_with(GOOD, ["networks", "net0", "cutover"], None)) == [
        "glidepath:networks.net0.cutover.kind: is missing"
    ]
    assert _problems(_with(GOOD, ["hosts"], None))[0] == (
        "glidepath:hosts: at least one host is required"
    )


def test_only_secrets_may_be_secure_entries() -> None:
    raw = _with(WITH_SSH, ["ssh", "known_hosts_path"], None)
    raw["ssh"]["known_hosts"] = {"secure": "v1:abc"}
    assert _problems(raw) == ["glidepath:ssh.known_hosts: must be text"]


def test_the_config_is_what_the_components_read() -> None:
    config = parse_config(_with(GOOD, ["hosts", "old", "port"], 2222.0))
    assert config.hosts["old"].endpoint() == {
        "name": "old",
        "address": "198.18.1.2",
        "port": 2222,
        "user": "root",
    }
    network = config.networks["net0"]
    assert (network.name, network.table_id, network.tunnel_route_metric) == ("net0", 201, 100)
    # The Upstream's `cutover` input: what the stack gives, no defaults added (the router
    # is an endpoint, whole).
    router = {"name": "core", "address": "198.18.0.2", "port": 22, "user": "root"}
    assert network.cutover.model_dump() == {"kind": "lab-router", "router": router}
    assert network.cutover.watch_s == 60  # the default for a switch that is at once
    assert config.vms_of("net0") == [config.vms["blog"]]
    assert config.link_between("new", "old") is config.links[0]
