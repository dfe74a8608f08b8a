"""Tunnel fact parsing, from output captured in the lab (iproute2 6.1, procps, OpenSSH 9.2):
a tun5 kept by glidepath's keeper between `old` (ssh) and `new` (sshd), a fresh tun9
opened by a bare `ssh -w 9:9` (down, no address), and the errors for what is not there.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from providers.facts import tunnel as facts
from providers.plans import tunnel as plans
from providers.transport import CommandResult

pytestmark = [pytest.mark.unit]

DATA = Path(__file__).parent / "data"
TUNNEL: plans.Tunnel = {
    "tun": 5,
    "user": "root",
    "peer": "198.18.2.2",
    "port": 22,
    "address": "198.18.105.1/24",
    "peer_address": "198.18.105.2/24",
}


def _result(stdout: str, status: int = 0, stderr: str = "") -> CommandResult:
    return CommandResult(("x",), status, stdout, stderr)


def _data(name: str) -> str:
    # Decoded as captured: the cmdline keeps its NUL separators.
    return (DATA / name).read_bytes().decode()


def test_up_device_on_each_end() -> None:
    old = facts.process_device(_result(_data("tunnel_ip_addr_tun5_old.json")))
    new = facts.process_device(_result(_data("tunnel_ip_addr_tun5_new.json")))
    # Captured without -d: no link details, so not persistent and no alias.
    plain = {"admin_up": True, "persistent": False, "alias": None, "mtu": 1500}
    assert old == {"ifname": "tun5", "up": True, "addresses": ["198.18.105.1/24"], **plain}
    assert new == {"ifname": "tun5", "up": True, "addresses": ["198.18.105.2/24"], **plain}


def test_fresh_device_is_down_without_address() -> None:
    fresh = facts.process_device(_result(_data("tunnel_ip_addr_tun9_fresh.json")))
    assert fresh is not None
    assert (fresh["up"], fresh["admin_up"], fresh["addresses"]) == (False, False, [])


def test_our_persistent_device_without_carrier() -> None:
    # `ip tuntap add`, our alias, addressed and set up, no ssh attached (ip -d -j addr).
    device = facts.process_device(
        _result(_data("tunnel_ip_d_addr_tun9_persistent_no_carrier.json"))
    )
    assert device == {
        "ifname": "tun9",
        "up": False,
        "addresses": ["198.18.199.1/24"],
        "admin_up": True,
        "persistent": True,
        "alias": "glidepath tunnel 198.18.1.2<->198.18.2.2",
        "mtu": 1500,
    }


def test_device_made_by_ssh_is_not_persistent() -> None:
    device = facts.process_device(_result(_data("tunnel_ip_d_addr_tun8_made_by_ssh.json")))
    assert device is not None
    assert (device["up"], device["persistent"], device["alias"]) == (True, False, None)


def test_absent_device_is_none() -> None:
    stderr = _data("tunnel_ip_addr_absent.stderr.txt")
    assert facts.process_device(_result("", 1, stderr)) is None


def test_other_ip_failure_raises() -> None:
    with pytest.raises(RuntimeError, match="Cannot open netlink"):
        facts.process_device(_result("", 2, "Cannot open netlink socket: Permission denied"))


def test_link_local_ipv6_is_not_an_address_of_ours() -> None:
    text = (
        '[{"ifname":"tun5","flags":["POINTOPOINT","UP","LOWER_UP"],"addr_info":['
        '{"family":"inet6","local":"fe80::1","prefixlen":64,"scope":"link"},'
        '{"family":"inet","local":"198.18.105.1","prefixlen":24,"scope":"global"}]}]'
    )
    device = facts.process_device(_result(text))
    assert device is not None
    assert device["addresses"] == ["198.18.105.1/24"]


def test_keeper_cmdline_is_exact_argv() -> None:
    cmdline = facts.process_cmdline(_result(_data("tunnel_proc_cmdline_keeper.bin")))
    assert cmdline is not None
    assert cmdline[:2] == ["/bin/bash", plans.SCRIPT_PATH]
    assert len(cmdline) == 9  # the remote command stays one element despite its spaces
    assert cmdline[8].startswith("sh -c 'PATH=")
    assert cmdline[2:8] == ["v1", "5", "root", "198.18.2.2", "22", "198.18.105.1/24"]


def test_gone_or_zombie_process_has_no_cmdline() -> None:
    stderr = _data("tunnel_cat_cmdline_gone.stderr.txt")
    assert facts.process_cmdline(_result("", 1, stderr)) is None
    assert facts.process_cmdline(_result("")) is None


def test_session_members_keeper_and_its_ssh() -> None:
    members = facts.process_members(_result(_data("tunnel_ps_sid_keeper.txt")))
    assert [(m["pid"], m["ppid"]) for m in members] == [(23707, 1), (23714, 23707)]
    assert members[0]["args"].startswith(f"/bin/bash {plans.SCRIPT_PATH} v1 5 root")
    assert plans.is_our_ssh(TUNNEL, members[1])
    assert not plans.is_our_ssh(TUNNEL, members[0])
    assert not plans.is_our_ssh({**TUNNEL, "tun": 6}, members[1])
    assert not plans.is_our_ssh({**TUNNEL, "peer": "198.18.3.2"}, members[1])


def test_empty_session() -> None:
    assert facts.process_members(_result("", 1)) == []


@pytest.mark.parametrize(
    ("text", "pid"),
    [("23707\n", 23707), (None, None), ("", None), ("junk\n", None), ("1\n", None), ("-5", None)],
)
def test_pid_file(text: str | None, pid: int | None) -> None:
    assert facts.process_pid(text) == pid
