"""providers/schema: each resource's inputs accepted and refused as its provider's `check`
does them (most providers check with the model itself), with the stack config's rules where
the two once disagreed."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from providers.mangle_mark import MangleMarkProvider
from providers.policy_rule import PolicyRuleProvider
from providers.route import RouteProvider
from providers.routing_table import RoutingTableProvider
from providers.schema.errors import problems
from providers.schema.mangle_mark import MangleMarkArgs
from providers.schema.policy_rule import PolicyRuleArgs
from providers.schema.route import RouteArgs
from providers.schema.routing_table import RoutingTableArgs
from providers.schema.sysctl import SysctlArgs
from providers.schema.tunnel import TunnelArgs
from providers.schema.upstream import UpstreamArgs
from providers.schema.vif_route_script import VifRouteScriptArgs
from providers.schema.vm_placement import VmPlacementArgs
from providers.sysctl import SysctlProvider
from providers.tunnel import TunnelProvider
from providers.upstream import UpstreamProvider
from providers.vif_route_script import VifRouteScriptProvider
from providers.vm_placement import VmPlacementProvider

pytestmark = [pytest.mark.unit]

OLD = {"name": "old", "address": "198.18.1.2"}
NEW = {"name": "new", "address": "198.18.2.2", "port": 22.0, "user": "root"}
ROUTER = {"name": "core", "address": "198.18.0.2"}

#: provider, its inputs model, good inputs, and bad values (field, value) both refuse.
RESOURCES: list[tuple[Any, type[BaseModel], dict[str, Any], list[tuple[str, Any]]]] = [
    (
        SysctlProvider,
        SysctlArgs,
        {"host": NEW, "key": "net/ipv4/ip_forward", "value": 1.0, "previous": None},
        [("key", "net ipv4"), ("value", "1; reboot"), ("host", {"name": "new"})],
    ),
    (
        VifRouteScriptProvider,
        VifRouteScriptArgs,
        {"host": NEW, "routes": {"vif1": " 203.0.113.3", "vif0": "203.0.113.2"}},
        [
            ("path", "/etc/libvirt/scripts/"),
            ("path", "/etc/a,b"),
            ("routes", {"vif+": "203.0.113.2"}),
            ("routes", {"vif0": "2001:db8::2"}),
            ("routes", {"vif0": "203.0.113.2", "vif1": "203.0.113.2"}),
            ("routes", ["vif0"]),
        ],
    ),
    (
        TunnelProvider,
        TunnelArgs,
        {
            "host": OLD,
            "peer": NEW,
            "tun": 2.0,
            "address": " 198.18.100.1/24",
            "peer_address": "198.18.100.2/24",
        },
        [
            ("tun", 256),
            ("tun", True),
            ("address", "198.18.100.0/24"),
            ("peer_address", "198.18.101.2/24"),
            ("peer_address", "198.18.100.1/24"),
            ("peer", {**OLD, "port": 2222}),
            ("peer", {**NEW, "command": "x"}),
            ("state", "down"),
        ],
    ),
    (
        RoutingTableProvider,
        RoutingTableArgs,
        {"host": NEW, "table_id": 201.0, "name": "vm-out"},
        [("table_id", 253), ("table_id", "two"), ("name", "main"), ("name", "201")],
    ),
    (
        PolicyRuleProvider,
        PolicyRuleArgs,
        {"host": NEW, "priority": 1000.0, "fwmark": 1.0, "table": "201"},
        [("priority", 32766), ("fwmark", "0x1"), ("fwmark", 2.5), ("table", "vm out")],
    ),
    (
        RouteProvider,
        RouteArgs,
        {"host": NEW, "dst": "0.0.0.0/0", "via": "198.18.100.1", "table": None, "metric": None},
        [
            ("dst", "203.0.113.1/29"),
            ("dst", "2001:db8::/32"),
            ("via", "2001:db8::1"),
            ("dev", "vif+"),
            ("metric", 4294967296),
            ("via", None),
        ],
    ),
    (
        MangleMarkProvider,
        MangleMarkArgs,
        {
            "host": NEW,
            "source": " 203.0.113.2",
            "in_interface": "vif+",
            "mark": 1.0,
            "chain": "forward",
        },
        [
            ("source", "2001:db8::/64"),
            ("in_interface", "vif*"),
            ("mark", 0),
            ("chain", "OUTPUT"),
            ("comment", "glidepathx"),
        ],
    ),
    (
        VmPlacementProvider,
        VmPlacementArgs,
        {
            "name": "blog",
            "host": OLD,
            "fleet": {"old": OLD, "new": NEW},
            "vif": "vif0",
            "ip": "203.0.113.2",
            "memory_mib": 128.0,
            "vcpus": 1,
            "disks": [{"path": "/var/lib/libvirt/images/blog.img", "size_mib": 64.0}],
            "boot": {"kernel": "/boot/vmlinuz", "cmdline": "console=ttyS0"},
            "domain_type": "qemu",
            "delete_disks": False,
            "cutover_router": ROUTER,
            "migration": {"max_downtime_ms": 100.0, "timeout_s": 600},
            "running": None,
        },
        [
            ("name", "blog;x"),
            ("memory_mib", 64),
            ("vcpus", 0),
            ("disks", [{"path": "images/x", "size_mib": 1}]),
            ("disks", [{"path": "/x", "size_mib": 1}, {"path": "/x", "size_mib": 2}]),
            ("boot", {"cmdline": "a\nb"}),
            ("migration", {"timeout_s": 0}),
            ("on_remove", "destroy"),
            ("shutdown_timeout_s", 0),
            ("delete_disks", True),  # without on_remove: shutdown
            ("domain_type", "xen"),
            ("host", {"name": "spare", "address": "198.18.3.2"}),
            ("cutover_router", {"name": "core"}),
        ],
    ),
    (
        UpstreamProvider,
        UpstreamArgs,
        {
            "network": "net0",
            "prefix": "203.0.113.0/29",
            "hosts": {"old": {**OLD, "uplink": "br0"}, "new": NEW},
            "upstream": "old",
            "marked": ["new"],
            "mark": 1.0,
            "cutover": {"kind": "lab-router", "router": ROUTER},
            "first_packet_timeout_s": 60.0,
            "vm_addresses": ["203.0.113.2"],
            "last_cutover": None,
        },
        [
            ("network", "net 0"),
            ("prefix", "203.0.113.1/29"),
            ("hosts", {"old": "198.18.1.2"}),
            ("hosts", {"old": {**OLD, "uplink": "br0;x"}}),
            ("upstream", "spare"),
            ("mark", 0),
            ("cutover", {"kind": "bgp"}),
            ("cutover", {"kind": "lab-router"}),
            ("first_packet_timeout_s", 3601),
            ("vm_addresses", ["x"]),
        ],
    ),
]


GOOD = {model: good for _, model, good, _ in RESOURCES}
PROVIDER = {model: provider for provider, model, _, _ in RESOURCES}


def _check(provider: Any, inputs: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    result = provider().check({}, inputs)
    return dict(result.inputs), {failure.property for failure in result.failures or []}


def _validate(model: type[BaseModel], inputs: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    try:
        return model.model_validate(inputs).model_dump(), set()
    except ValidationError as err:
        return {}, {path.split(".")[0].split("[")[0] for path, _ in problems(model, err)}


def _within(checked: Any, validated: Any) -> bool:
    """`checked` is `validated`, where the model may add defaults inside a mapping."""
    if isinstance(checked, dict) and isinstance(validated, dict):
        return all(k in validated and _within(v, validated[k]) for k, v in checked.items())
    return bool(checked == validated)


@pytest.mark.parametrize(
    ("provider", "model", "good"),
    [pytest.param(*case[:3], id=case[1].__name__) for case in RESOURCES],
)
def test_good_inputs_are_canonical_as_check_makes_them(
    provider: Any, model: type[BaseModel], good: dict[str, Any]
) -> None:
    checked, failures = _check(provider, good)
    assert failures == set()
    validated, problems_found = _validate(model, good)
    assert problems_found == set()
    for field in good:
        assert _within(checked[field], validated[field]), field


@pytest.mark.parametrize(
    ("provider", "model", "good", "field", "bad"),
    [
        pytest.param(p, m, g, field, bad, id=f"{m.__name__}.{field}")
        for p, m, g, bad_values in RESOURCES
        for field, bad in bad_values
    ],
)
def test_bad_inputs_are_refused_naming_the_field_as_check_does(
    provider: Any, model: type[BaseModel], good: dict[str, Any], field: str, bad: Any
) -> None:
    inputs = {**good, field: bad}
    assert _check(provider, inputs)[1] == {field}
    assert _validate(model, inputs)[1] == {field}


@pytest.mark.parametrize(
    ("model", "good", "field", "bad"),
    [
        # Where the stack config and a provider disagreed, the stack config's rule holds.
        (VmPlacementArgs, GOOD[VmPlacementArgs], "vif", "tap0"),
        (VmPlacementArgs, GOOD[VmPlacementArgs], "boot", {"kernel": ""}),
        (VmPlacementArgs, GOOD[VmPlacementArgs], "boot", {"initrd": "/i", "root": "/dev/vda"}),
        (VmPlacementArgs, GOOD[VmPlacementArgs], "delete_disks", "no"),
        (VmPlacementArgs, GOOD[VmPlacementArgs], "migration", {"auto_converge": "off"}),
        (VmPlacementArgs, GOOD[VmPlacementArgs], "migration", {"max_downtime": 100}),
        (UpstreamArgs, GOOD[UpstreamArgs], "prefix", "2001:db8::/64"),
        (UpstreamArgs, GOOD[UpstreamArgs], "cutover", {"kind": "manual", "router": ROUTER}),
        (UpstreamArgs, GOOD[UpstreamArgs], "cutover", {"kind": "hetzner-robot", "timeout_s": "x"}),
        (
            UpstreamArgs,
            GOOD[UpstreamArgs],
            "cutover",
            {"kind": "hetzner-robot", "failover_ip": "198.51.100.1"},
        ),
        (MangleMarkArgs, GOOD[MangleMarkArgs], "mark", "0x10"),
    ],
)
def test_the_stack_configs_rules_hold_for_the_resources(
    model: type[BaseModel], good: dict[str, Any], field: str, bad: Any
) -> None:
    assert _validate(model, {**good, field: bad})[1] == {field}
    assert _check(PROVIDER[model], {**good, field: bad})[1] == {field}


def test_defaults_are_the_stack_configs() -> None:
    good = {k: v for k, v in GOOD[VmPlacementArgs].items() if k not in ("domain_type", "boot")}
    args = VmPlacementArgs.model_validate({**good, "memory_mib": None, "migration": None})
    assert (args.domain_type, args.memory_mib, args.boot) == ("kvm", 128, {})
    assert args.migration.max_downtime_ms == 100


def test_the_first_packet_watch_outlasts_the_backends_switch() -> None:
    from pydantic import ValidationError

    from providers.schema.upstream import (
        HetznerRobotCutover,
        LabRouterCutover,
        ManualCutover,
    )

    router = {"name": "core", "address": "198.18.0.2"}
    assert LabRouterCutover.model_validate({"kind": "lab-router", "router": router}).watch_s == 60
    assert ManualCutover.model_validate({"kind": "manual"}).watch_s == 600
    robot = HetznerRobotCutover.model_validate({"kind": "hetzner-robot"})
    assert (robot.timeout_s, robot.watch_s) == (180, 240)
    assert (
        HetznerRobotCutover.model_validate(
            {"kind": "hetzner-robot", "timeout_s": 30, "first_packet_timeout_s": 45}
        ).watch_s
        == 45
    )
    # A watch that may end before Robot's own switch call has: refused at preview.
    with pytest.raises(ValidationError, match="must exceed timeout_s"):
        HetznerRobotCutover.model_validate({"kind": "hetzner-robot", "first_packet_timeout_s": 60})
