"""`upstream: auto`: the prefix follows the VMs, and stays put while they are split."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from components.config import parse_config
from components.network import decide_upstream, egress_hosts
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
    ("placements", "previous", "expected"),
    [
        ({"blog": "old"}, None, "old"),
        ({"blog": "new"}, "old", "new"),  # moving the only VM moves the prefix
        ({"a": "old", "b": "new"}, "old", "old"),  # one of several moved: stays
        ({"a": "new", "b": "old"}, "new", "new"),
        ({"a": "new", "b": "new"}, "old", "new"),  # the last one moved: cutover
        ({"a": "old", "b": "new"}, None, "old"),  # first run, split: first host with VMs
    ],
)
def test_auto(placements: dict[str, str], previous: str | None, expected: str) -> None:
    config = _config(placements)
    assert decide_upstream(config.networks["net0"], config, previous) == expected


def test_explicit_upstream_wins() -> None:
    config = _config({"blog": "old"}, upstream="new")
    assert decide_upstream(config.networks["net0"], config, "old") == "new"


def test_egress_hosts_are_the_upstreams_peers() -> None:
    config = _config({"blog": "old"})
    assert egress_hosts(config, "old") == ["new"]
    assert egress_hosts(config, "new") == ["old"]
