"""The stack config parser: the blog's stack parses; mistakes name their field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from components.config import ConfigError, parse_config

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
            "cutover": {"kind": "lab-router", "router": "core"},
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
        f"vm{i}": {**GOOD["vms"]["blog"], "ip": f"203.0.113.{i}", "vif": f"vif{i}"}
        for i in range(8)
    }
    config = parse_config(raw)
    assert [vm.ip for vm in config.vms.values()] == [f"203.0.113.{i}" for i in range(8)]
