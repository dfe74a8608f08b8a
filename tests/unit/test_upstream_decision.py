"""`upstream: auto`: the prefix follows the VMs, and stays where it is routed now while they
are split; what the program reads to know that, and when it reads nothing."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from components.config import parse_config
from components.network import decide_upstream, egress_hosts
from components.routed import (
    config_upstream,
    host_by_address,
    needs_routed_host,
    unmarked_host,
)
from tests.unit.test_config import GOOD

pytestmark = [pytest.mark.unit]


def _config(placements: dict[str, str], upstream: str = "auto") -> Any:
    raw = copy.deepcopy(GOOD)
    raw["networks"]["net0"]["upstream"] = upstream
    template = raw["vms"].pop("blog")
    for index, (name, host) in enumerate(placements.items()):
        raw["vms"][name] = {
            **template,
            "host": host,
            "ip": f"203.0.113.{2 + index}",
            "vif": f"vif{index}",
            "disks": [{"path": f"/var/lib/libvirt/images/{name}.img", "size_mib": 64}],
        }
    return parse_config(raw)


@pytest.mark.parametrize(
    ("placements", "routed", "expected"),
    [
        ({"blog": "old"}, None, "old"),
        ({"blog": "new"}, "old", "new"),  # moving the only VM moves the prefix
        ({"a": "old", "b": "new"}, "old", "old"),  # one of several moved: stays
        ({"a": "new", "b": "old"}, "new", "new"),
        ({"a": "new", "b": "new"}, "old", "new"),  # the last one moved: cutover
        ({"a": "old", "b": "new"}, None, "old"),  # split and unrouted: first host with VMs
    ],
)
def test_auto(placements: dict[str, str], routed: str | None, expected: str) -> None:
    config = _config(placements)
    assert decide_upstream(config.networks["net0"], config, routed) == expected


@pytest.mark.parametrize(
    ("placements", "upstream", "decided", "reads"),
    [
        ({"blog": "old"}, "auto", "old", False),  # the lab stack: nothing to read
        ({"a": "new", "b": "new"}, "auto", "new", False),  # a whole-server move
        ({"a": "old", "b": "new"}, "auto", None, True),  # split: stay where routed now
        ({"a": "old"}, "old", "old", False),
        ({"a": "old", "b": "new"}, "old", "old", True),  # new's mark must be there first
    ],
)
def test_the_program_reads_the_routed_host_only_where_the_config_leaves_it_open(
    placements: dict[str, str], upstream: str, decided: str | None, reads: bool
) -> None:
    config = _config(placements, upstream=upstream)
    network = config.networks["net0"]
    assert config_upstream(network, config) == decided
    assert needs_routed_host(network, config) is reads


@pytest.mark.parametrize(
    ("marked", "expected"),
    [
        ({"old": False, "new": True}, "old"),
        ({"old": True, "new": False}, "new"),
        ({"old": False, "new": False}, None),  # a first run: the marks do not say
        ({"old": True, "new": True}, None),
    ],
)
def test_manual_cutover_reads_the_upstream_from_the_egress_marks(
    marked: dict[str, bool], expected: str | None
) -> None:
    assert unmarked_host(_config({"blog": "old"}), marked) == expected


def test_explicit_upstream_wins() -> None:
    config = _config({"blog": "old"}, upstream="new")
    assert decide_upstream(config.networks["net0"], config, "old") == "new"


def test_egress_hosts_are_the_upstreams_peers() -> None:
    config = _config({"blog": "old"})
    assert egress_hosts(config, "old") == ["new"]
    assert egress_hosts(config, "new") == ["old"]


def test_the_routed_host_is_found_by_its_main_ip() -> None:
    # Robot answers with a server's main IP; SSH may reach that server elsewhere.
    config = _config({"blog": "old"})
    assert host_by_address(config, "198.18.2.2") == "new"
    raw = copy.deepcopy(GOOD)
    raw["hosts"]["new"]["main_ip"] = "198.51.100.20"
    config = parse_config(raw)
    assert host_by_address(config, "198.51.100.20") == "new"
    assert host_by_address(config, "198.18.2.2") is None
