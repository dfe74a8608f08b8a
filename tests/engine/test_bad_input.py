"""Malformed stacks fail at `pulumi preview` naming the field, and reach no host.

glidepath's own program (Pulumi.yaml `main:` points at the checkout) runs through the real
CLI and language host on one stack whose config file is rewritten for each case. Its hosts
are the addresses of one throwaway namespace whose sshd logs every connection, even one
refused before authentication: after every failed preview that log must not have grown.
The state backend is a directory of this test's own (nothing shared with other stacks).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi import automation as auto

from engine import PROJECT_ROOT, engine_env
from engine.workspace import pulumi_command
from providers import transport
from tests.support.netns_sshd import SshHost, sshd_netns

pytestmark = [pytest.mark.engine, pytest.mark.badinput]

STACK = "badinput"
DELETE = object()
#: What sshd (LogLevel VERBOSE) writes for any TCP connection, before any authentication.
CONNECTION = "Connection from "
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDpns/U/DRP/Z/UiEI134fh/nFvoRD0XulmGYl+LmJxk"


@dataclass
class Workspace:
    stack: auto.Stack
    stack_file: Path
    salt: str
    secure: dict[str, dict[str, str]]  # name -> {"secure": ciphertext}
    host: SshHost

    def good_config(self) -> dict[str, Any]:
        a0, a1, a2 = self.host.addresses
        return {
            "glidepath:hosts": {
                "old": {"address": a0, "uplink": "eth0"},
                "new": {"address": a1, "uplink": "eth0"},
                "spare": {"address": a2, "uplink": "eth0"},
            },
            "glidepath:ssh": {
                "user": "root",
                "private_key": self.secure["private_key"],
                "known_hosts": self.host.known_hosts,
            },
            "glidepath:links": [
                {
                    "hosts": ["old", "new"],
                    "kind": "ssh-tun",
                    "tun": 2,
                    "addresses": ["198.18.100.1/24", "198.18.100.2/24"],
                }
            ],
            "glidepath:networks": {
                "net0": {
                    "prefix": "203.0.113.0/29",
                    "upstream": "auto",
                    "cutover": {"kind": "manual"},
                    "mark": 1,
                    "table": {"id": 201, "name": "vm-out"},
                }
            },
            "glidepath:vms": {
                "blog": {
                    "host": "old",
                    "network": "net0",
                    "ip": "203.0.113.2",
                    "vif": "vif0",
                    "memory_mib": 128,
                    "disks": [{"path": "/var/lib/libvirt/images/blog.img", "size_mib": 64}],
                    "migration": {
                        "max_downtime_ms": 100,
                        "bandwidth_mib_s": 0,
                        "auto_converge": True,
                        "timeout_s": 600,
                    },
                    "domain_type": "qemu",
                }
            },
        }

    def write(self, config: dict[str, Any]) -> None:
        self.stack_file.write_text(
            yaml.safe_dump({"config": config, "encryptionsalt": self.salt}, sort_keys=False)
        )

    def preview(self, config: dict[str, Any]) -> tuple[bool, str]:
        """(succeeded, everything the CLI printed) for a preview of `config`."""
        self.write(config)
        lines: list[str] = []
        try:
            self.stack.preview(on_output=lines.append, on_error=lines.append, color="never")
        except auto.CommandError as err:
            return False, "\n".join(lines) + "\n" + str(err)
        return True, "\n".join(lines)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshHost]:
    with sshd_netns(
        tmp_path_factory.mktemp("badinput-ssh"), log_level="VERBOSE", addresses=3
    ) as host:
        yield host


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, sshd: SshHost) -> Workspace:
    root = tmp_path_factory.mktemp("badinput")
    project = root / "project"
    project.mkdir()
    (root / "state").mkdir()
    # The checkout's program, run as a user runs it; only the stack file lives here.
    (project / "Pulumi.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "glidepath",
                "runtime": {
                    "name": "python",
                    "options": {"toolchain": "pip", "virtualenv": str(PROJECT_ROOT / ".venv")},
                },
                "main": str(PROJECT_ROOT),
            }
        )
    )
    env = {k: v for k, v in engine_env().items() if k.startswith(("PULUMI_", "PATH", "PYTHON"))}
    env["PULUMI_BACKEND_URL"] = f"file://{root / 'state'}"
    stack = auto.create_or_select_stack(
        stack_name=STACK,
        work_dir=str(project),
        opts=auto.LocalWorkspaceOptions(
            work_dir=str(project), pulumi_command=pulumi_command(), env_vars=env
        ),
    )
    # Encrypt the secrets once (the CLI does it); every case reuses the ciphertexts.
    plain = {
        "ssh.private_key": sshd.private_key,
        "robot.user": "#ws+glidepath",
        "robot.password": "not-the-password",
        "bad.not_a_key": PUBLIC_KEY,
    }
    for path, value in plain.items():
        stack.set_config(f"glidepath:{path}", auto.ConfigValue(value, secret=True), path=True)
    stack_file = project / f"Pulumi.{STACK}.yaml"
    document = yaml.safe_load(stack_file.read_text())
    config = document["config"]
    secure = {
        path.split(".")[1]: config[f"glidepath:{path.split('.')[0]}"][path.split(".")[1]]
        for path in plain
    }
    return Workspace(stack, stack_file, document["encryptionsalt"], secure, sshd)


def _edited(config: dict[str, Any], edits: list[tuple[list[Any], Any]]) -> dict[str, Any]:
    config = copy.deepcopy(config)
    for path, value in edits:
        target = config
        for key in path[:-1]:
            target = target[key]
        if value is DELETE:
            del target[path[-1]]
        elif isinstance(target, list) and path[-1] == len(target):
            target.append(value)
        else:
            target[path[-1]] = value
    return config


H, S, L, N, V = (
    "glidepath:hosts",
    "glidepath:ssh",
    "glidepath:links",
    "glidepath:networks",
    "glidepath:vms",
)
NET1 = {
    "prefix": "198.51.100.0/29",
    "cutover": {"kind": "manual"},
    "mark": 2,
    "table": {"id": 202, "name": "vm-out1"},
    "rule_priority": 1001,
}
WWW = {
    "host": "new",
    "network": "net0",
    "ip": "203.0.113.3",
    "vif": "vif1",
    "disks": [{"path": "/var/lib/libvirt/images/www.img", "size_mib": 64}],
}
LINK2 = {"hosts": ["old", "spare"], "tun": 3, "addresses": ["198.18.101.1/24", "198.18.101.2/24"]}
ROBOT = {"kind": "hetzner-robot"}


def _case(name: str, field: str, *edits: tuple[list[Any], Any]) -> Any:
    return pytest.param(field, list(edits), id=name)


def _net1(**changes: Any) -> tuple[list[Any], Any]:
    return ([N, "net1"], {**NET1, **changes})


def _www(**changes: Any) -> tuple[list[Any], Any]:
    return ([V, "www"], {**WWW, **changes})


CASES = [
    # hosts
    _case("no-hosts", "glidepath:hosts", ([H], {})),
    _case("host-address-a-name", f"{H}.old.address", ([H, "old", "address"], "old.example")),
    # (The engine hands objects over with sorted keys: the second holder is `spare`.)
    _case(
        "host-address-twice",
        f"{H}.spare.address",
        ([H, "spare", "address"], "fd67:6c69:6465:7061::2"),
    ),
    _case("port-0", f"{H}.old.port", ([H, "old", "port"], 0)),
    _case("port-65536", f"{H}.old.port", ([H, "old", "port"], 65536)),
    _case("port-with-command", f"{H}.old.port", ([H, "old", "port"], "22; reboot")),
    _case("uplink-metachar", f"{H}.old.uplink", ([H, "old", "uplink"], "br0$(reboot)")),
    _case("host-name-metachar", f"{H}.x;reboot", ([H, "x;reboot"], {"address": "192.0.2.9"})),
    _case("user-backquote", f"{H}.old.user", ([H, "old", "user"], "root`id`")),
    # ssh: the key and the host keys
    _case("no-ssh", "glidepath:ssh", ([S], DELETE)),
    _case("no-private-key", f"{S}.private_key", ([S, "private_key"], DELETE)),
    _case("private-key-in-plain", f"{S}.private_key", ([S, "private_key"], "PLAINTEXT")),
    _case("private-key-is-public", f"{S}.private_key", ([S, "private_key"], "NOT_A_KEY")),
    _case("no-known-hosts", f"{S}.known_hosts", ([S, "known_hosts"], DELETE)),
    _case("known-hosts-lacks-a-host", f"{S}.known_hosts", ([S, "known_hosts"], "ONE_HOST")),
    _case("ssh-user-semicolon", f"{S}.user", ([S, "user"], "root;id")),
    # links
    _case("link-to-unknown-host", f"{L}[0].hosts", ([L, 0, "hosts"], ["old", "nowhere"])),
    _case("link-to-itself", f"{L}[0].hosts", ([L, 0, "hosts"], ["old", "old"])),
    _case("tun-256", f"{L}[0].tun", ([L, 0, "tun"], 256)),
    _case("tun-negative", f"{L}[0].tun", ([L, 0, "tun"], -1)),
    _case("tun-clash", f"{L}[1].tun", ([L, 1], {**LINK2, "tun": 2})),
    _case(
        "tunnel-networks-overlap",
        f"{L}[1].addresses",
        ([L, 1], {**LINK2, "addresses": ["198.18.100.5/24", "198.18.100.6/24"]}),
    ),
    _case(
        "tunnel-ends-apart",
        f"{L}[0].addresses",
        ([L, 0, "addresses"], ["198.18.100.1/24", "198.18.200.2/24"]),
    ),
    _case(
        "tunnel-ipv6", f"{L}[0].addresses[0]", ([L, 0, "addresses"], ["fd00::1/64", "fd00::2/64"])
    ),
    _case("link-kind-gre", f"{L}[0].kind", ([L, 0, "kind"], "gre")),
    # networks
    _case("prefix-host-bits", f"{N}.net0.prefix", ([N, "net0", "prefix"], "203.0.113.1/29")),
    _case("prefix-33", f"{N}.net0.prefix", ([N, "net0", "prefix"], "203.0.113.0/33")),
    _case("prefix-ipv6", f"{N}.net0.prefix", ([N, "net0", "prefix"], "2001:db8::/64")),
    _case("prefixes-overlap", f"{N}.net1.prefix", _net1(prefix="203.0.113.0/28")),
    _case("upstream-unknown", f"{N}.net0.upstream", ([N, "net0", "upstream"], "nowhere")),
    _case("cutover-kind-bgp", f"{N}.net0.cutover.kind", ([N, "net0", "cutover"], {"kind": "bgp"})),
    _case(
        "lab-router-without-router",
        f"{N}.net0.cutover.router",
        ([N, "net0", "cutover"], {"kind": "lab-router"}),
    ),
    _case("robot-credentials-missing", "glidepath:robot", ([N, "net0", "cutover"], ROBOT)),
    _case(
        "robot-credentials-in-plain",
        "glidepath:robot",
        ([N, "net0", "cutover"], ROBOT),
        (["glidepath:robot"], {"user": "u", "password": "p"}),
    ),
    _case(
        "robot-over-http",
        f"{N}.net0.cutover.base_url",
        ([N, "net0", "cutover"], {**ROBOT, "base_url": "http://robot.example"}),
        (["glidepath:robot"], "ROBOT"),
    ),
    _case(
        "failover-ip-elsewhere",
        f"{N}.net0.cutover.failover_ip",
        ([N, "net0", "cutover"], {**ROBOT, "failover_ip": "198.51.100.1"}),
        (["glidepath:robot"], "ROBOT"),
    ),
    _case(
        "first-packet-watch-shorter-than-robots-switch",
        f"{N}.net0.cutover.first_packet_timeout_s",
        ([N, "net0", "cutover"], {**ROBOT, "first_packet_timeout_s": 60}),
        (["glidepath:robot"], "ROBOT"),
    ),
    _case(
        "first-packet-timeout-text",
        f"{N}.net0.cutover.first_packet_timeout_s",
        ([N, "net0", "cutover"], {"kind": "manual", "first_packet_timeout_s": "soon"}),
    ),
    _case("mark-0", f"{N}.net0.mark", ([N, "net0", "mark"], 0)),
    _case("mark-twice", f"{N}.net1.mark", _net1(mark=1)),
    _case("table-id-0", f"{N}.net0.table.id", ([N, "net0", "table", "id"], 0)),
    _case("table-id-253", f"{N}.net0.table.id", ([N, "net0", "table", "id"], 253)),
    _case("table-name-main", f"{N}.net0.table.name", ([N, "net0", "table", "name"], "main")),
    _case("table-shared", f"{N}.net1.table.id", _net1(table={"id": 201, "name": "other"})),
    _case("rule-priority-shared", f"{N}.net1.rule_priority", _net1(rule_priority=1000)),
    _case("network-name-space", f"{N}.net 1", ([N, "net 1"], NET1)),
    # VMs
    _case("ip-outside-prefix", f"{V}.blog.ip", ([V, "blog", "ip"], "198.51.100.2")),
    _case("ip-not-an-address", f"{V}.blog.ip", ([V, "blog", "ip"], "203.0.113.2; reboot")),
    _case("ip-twice", f"{V}.www.ip", _www(ip="203.0.113.2")),
    _case("vif-twice", f"{V}.www.vif", _www(vif="vif0")),
    _case("vif-semicolon", f"{V}.blog.vif", ([V, "blog", "vif"], "vif0;reboot")),
    _case("vif-quote", f"{V}.blog.vif", ([V, "blog", "vif"], "vif'0")),
    _case("vif-16-chars", f"{V}.blog.vif", ([V, "blog", "vif"], "vif0123456789abc")),
    _case("vif-not-vif", f"{V}.blog.vif", ([V, "blog", "vif"], "tap0")),
    _case("vm-on-unknown-host", f"{V}.blog.host", ([V, "blog", "host"], "nowhere")),
    _case("vm-in-unknown-network", f"{V}.blog.network", ([V, "blog", "network"], "net9")),
    _case("vm-name-semicolon", f"{V}.blog;reboot", ([V, "blog;reboot"], {**WWW})),
    _case("memory-0", f"{V}.blog.memory_mib", ([V, "blog", "memory_mib"], 0)),
    _case("memory-negative", f"{V}.blog.memory_mib", ([V, "blog", "memory_mib"], -128)),
    _case("memory-text", f"{V}.blog.memory_mib", ([V, "blog", "memory_mib"], "lots")),
    _case("memory-too-small", f"{V}.blog.memory_mib", ([V, "blog", "memory_mib"], 64)),
    _case("memory-fraction", f"{V}.blog.memory_mib", ([V, "blog", "memory_mib"], 128.5)),
    _case(
        "disk-size-negative",
        f"{V}.blog.disks[0].size_mib",
        ([V, "blog", "disks", 0, "size_mib"], -64),
    ),
    _case("disk-size-0", f"{V}.blog.disks[0].size_mib", ([V, "blog", "disks", 0, "size_mib"], 0)),
    _case(
        "disk-relative",
        f"{V}.blog.disks[0].path",
        ([V, "blog", "disks", 0, "path"], "images/blog.img"),
    ),
    _case(
        "disk-dotdot",
        f"{V}.blog.disks[0].path",
        ([V, "blog", "disks", 0, "path"], "/var/lib/libvirt/../../../etc/shadow"),
    ),
    _case(
        "disk-metachar",
        f"{V}.blog.disks[0].path",
        ([V, "blog", "disks", 0, "path"], "/var/lib/libvirt/images/$(reboot).img"),
    ),
    _case(
        "disk-shared",
        f"{V}.www.disks[0].path",
        _www(disks=[{"path": "/var/lib/libvirt/images/blog.img", "size_mib": 64}]),
    ),
    _case(
        "disk-lvcreate-a-file",
        f"{V}.blog.disks[0].create",
        ([V, "blog", "disks", 0, "create"], "lvcreate"),
    ),
    _case(
        "disk-lvcreate-not-a-volume-path",
        f"{V}.blog.disks[0].path",
        ([V, "blog", "disks", 0], {"path": "/dev/sdb", "size_mib": 64, "create": "lvcreate"}),
    ),
    _case(
        "disk-lvcreate-reserved-lv-name",
        f"{V}.blog.disks[0].path",
        (
            [V, "blog", "disks", 0],
            {"path": "/dev/vg0/pvmove0", "size_mib": 64, "create": "lvcreate"},
        ),
    ),
    _case(
        "delete-block-disks",
        f"{V}.blog.delete_disks",
        ([V, "blog", "disks", 0], {"path": "/dev/vg0/blog", "size_mib": 64}),
        ([V, "blog", "delete_disks"], True),
    ),
    _case(
        "max-downtime-0",
        f"{V}.blog.migration.max_downtime_ms",
        ([V, "blog", "migration", "max_downtime_ms"], 0),
    ),
    _case(
        "timeout-negative",
        f"{V}.blog.migration.timeout_s",
        ([V, "blog", "migration", "timeout_s"], -1),
    ),
    _case(
        "bandwidth-negative",
        f"{V}.blog.migration.bandwidth_mib_s",
        ([V, "blog", "migration", "bandwidth_mib_s"], -1),
    ),
    _case(
        "auto-converge-maybe",
        f"{V}.blog.migration.auto_converge",
        ([V, "blog", "migration", "auto_converge"], "maybe"),
    ),
    _case("delete-disks-yes", f"{V}.blog.delete_disks", ([V, "blog", "delete_disks"], "yes")),
    # Deleting the disks of a VM that keeps running (released) would be a disaster.
    _case(
        "delete-disks-of-a-released-vm",
        f"{V}.blog.delete_disks",
        ([V, "blog", "delete_disks"], True),
    ),
    _case("on-remove-destroy", f"{V}.blog.on_remove", ([V, "blog", "on_remove"], "destroy")),
    _case(
        "shutdown-timeout-0",
        f"{V}.blog.shutdown_timeout_s",
        ([V, "blog", "shutdown_timeout_s"], 0),
    ),
    _case("protect-maybe", f"{V}.blog.protect", ([V, "blog", "protect"], "maybe")),
    _case("domain-type-xen", f"{V}.blog.domain_type", ([V, "blog", "domain_type"], "xen")),
    _case("kernel-relative", f"{V}.blog.boot.kernel", ([V, "blog", "boot"], {"kernel": "vmlinuz"})),
    _case(
        "cmdline-two-lines",
        f"{V}.blog.boot.cmdline",
        ([V, "blog", "boot"], {"cmdline": "quiet\ninit=/bin/sh"}),
    ),
    _case("field-misspelt", f"{V}.blog", ([V, "blog", "memroy_mib"], 256)),
]


def _resolve(workspace: Workspace, config: dict[str, Any]) -> dict[str, Any]:
    """Put the encrypted values in for the placeholders the cases use."""
    ssh = config.get(S)
    if isinstance(ssh, dict):
        if ssh.get("private_key") == "PLAINTEXT":
            ssh["private_key"] = workspace.host.private_key
        elif ssh.get("private_key") == "NOT_A_KEY":
            ssh["private_key"] = workspace.secure["not_a_key"]
        if ssh.get("known_hosts") == "ONE_HOST":
            ssh["known_hosts"] = workspace.host.known_hosts.splitlines()[0] + "\n"
    if config.get("glidepath:robot") == "ROBOT":
        config["glidepath:robot"] = {
            "user": workspace.secure["user"],
            "password": workspace.secure["password"],
        }
    return config


def _key_material(host: SshHost) -> str:
    return "".join(host.private_key.splitlines()[1:-1])


def test_the_good_stack_previews_without_reaching_a_host(workspace: Workspace) -> None:
    # The control: the same harness passes a sound stack, so each failure below is its
    # input's doing. A first preview only checks inputs: no host is contacted either.
    before = workspace.host.log()
    ok, output = workspace.preview(workspace.good_config())
    assert ok, output
    assert "VmPlacement" in output or "blog" in output
    assert CONNECTION not in workspace.host.log()[len(before) :]


@pytest.mark.parametrize(("field", "edits"), CASES)
def test_a_malformed_stack_fails_preview_naming_the_field(
    workspace: Workspace, field: str, edits: list[tuple[list[Any], Any]]
) -> None:
    config = _resolve(workspace, _edited(workspace.good_config(), edits))
    log_before = workspace.host.log()
    started = time.monotonic()
    ok, output = workspace.preview(config)
    elapsed = time.monotonic() - started
    assert not ok, output
    assert "invalid stack config:" in output, output
    assert f"{field}:" in output, output
    # A plain message (ConfigError is a RunError), not the program's traceback.
    assert "Traceback" not in output, output
    # Neither the key nor any other secret is echoed, even the one given in plain.
    assert _key_material(workspace.host)[100:160] not in output
    assert "not-the-password" not in output
    # And nothing reached the host: sshd logged no connection while the preview ran.
    new_log = workspace.host.log()[len(log_before) :]
    assert CONNECTION not in new_log, new_log
    print(f"badinput: {field}: failed preview in {elapsed:.1f} s")


def test_the_sshd_log_would_have_shown_a_connection(workspace: Workspace) -> None:
    # The proof above is only as good as the log: one real connection must show in it.
    host = workspace.host
    before = host.log()
    credentials = transport.SshCredentials(host.private_key, host.known_hosts)
    session = transport.SshSession(transport.Endpoint("old", host.address), credentials)
    try:
        assert session.run(["true"]).ok
    finally:
        session.close()
    deadline = time.monotonic() + 5
    while CONNECTION not in host.log()[len(before) :] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert CONNECTION in host.log()[len(before) :]
