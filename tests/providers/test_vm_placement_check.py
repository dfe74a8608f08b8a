"""VmPlacement.check: its inputs are the stack's VM (providers/schema/vm_placement.py), with
the stack config's defaults and rules; a wrong field is named (no lab, no host)."""

from __future__ import annotations

from typing import Any

import pytest

from providers.vm_placement import VmPlacementProvider

pytestmark = [pytest.mark.unit]

OLD = {"name": "old", "address": "198.18.1.2"}
NEW = {"name": "new", "address": "198.18.2.2"}
IMG = "/var/lib/libvirt/images/blog.img"


def _check(**fields: Any) -> tuple[dict[str, Any], dict[str, str]]:
    news = {
        "name": "blog",
        "host": OLD,
        "fleet": {"old": OLD, "new": NEW},
        "ip": "203.0.113.2",
        "vif": "vif0",
        **fields,
    }
    result = VmPlacementProvider().check({}, news)
    return dict(result.inputs), {f.property: f.reason for f in result.failures or []}


def test_the_stack_configs_defaults_fill_what_is_not_given() -> None:
    inputs, failures = _check()
    assert failures == {}
    assert inputs["host"] == {**OLD, "port": 22, "user": "root"}
    assert inputs["fleet"]["new"] == {**NEW, "port": 22, "user": "root"}
    # domain_type: the stack config's kvm (the provider's own default was qemu).
    assert (inputs["domain_type"], inputs["memory_mib"], inputs["vcpus"]) == ("kvm", 128, 1)
    assert (inputs["disks"], inputs["boot"], inputs["delete_disks"]) == ([], {}, False)
    # Removed from the stack, it is released: it keeps running.
    assert (inputs["on_remove"], inputs["shutdown_timeout_s"]) == ("release", 120)
    assert inputs["migration"] == {
        "max_downtime_ms": 100,
        "bandwidth_mib_s": 0,
        "auto_converge": True,
        "timeout_s": 600,
        "transport": "tunnel",
    }
    assert inputs["cutover_router"] is None
    assert inputs["tunnel_addresses"] == {}


def test_tunnel_addresses_name_hosts_of_the_fleet_and_are_interface_addresses() -> None:
    inputs, failures = _check(tunnel_addresses={"new": {"old": "198.18.100.2/24"}})
    assert failures == {} and inputs["tunnel_addresses"] == {"new": {"old": "198.18.100.2/24"}}
    _, failures = _check(tunnel_addresses={"new": {"h9": "198.18.100.2/24"}})
    assert "'h9' is not one of the stack's hosts" in failures["tunnel_addresses"]
    _, failures = _check(tunnel_addresses={"new": {"old": "198.18.100.2"}})
    assert (
        "tunnel_addresses.new.old: '198.18.100.2' needs a prefix length"
        in (failures["tunnel_addresses"])
    )


def test_given_values_are_canonical_and_outputs_pass_through() -> None:
    inputs, failures = _check(
        memory_mib=256.0,
        disks=[{"path": IMG, "size_mib": "64"}],
        boot={"kernel": "/boot/vmlinuz", "cmdline": "console=ttyS0"},
        migration={"timeout_s": 30.0},
        cutover_router={"name": "core", "address": "198.18.0.2"},
        running=False,
    )
    assert failures == {}
    assert inputs["memory_mib"] == 256 and isinstance(inputs["memory_mib"], int)
    assert inputs["disks"] == [{"path": IMG, "size_mib": 64}]
    assert inputs["boot"] == {"kernel": "/boot/vmlinuz", "cmdline": "console=ttyS0"}
    assert inputs["migration"]["timeout_s"] == 30
    assert inputs["migration"]["max_downtime_ms"] == 100
    assert inputs["cutover_router"]["port"] == 22
    assert inputs["running"] is False


@pytest.mark.parametrize(
    ("field", "bad", "said"),
    [
        ("name", "blog;x", "not a valid VM name"),
        ("vif", "tap0", "must start with 'vif'"),  # the egress mark matches vif+
        ("memory_mib", 64, "from 96"),
        ("vcpus", 0, "from 1 to 256"),
        ("disks", [{"path": "images/x", "size_mib": 1}], "disks[0].path"),
        ("disks", [{"path": "/x", "size_mib": 1}, {"path": "/x", "size_mib": 2}], "disks[1].path"),
        ("boot", {"cmdline": "a\nb"}, "one line"),
        ("boot", {"initrd": "/i", "root": "/dev/vda"}, "unknown fields ['root']"),
        ("migration", {"timeout_s": 0}, "migration.timeout_s"),
        ("migration", {"max_downtime": 100}, "unknown fields ['max_downtime']"),
        ("migration", {"auto_converge": "off"}, "true or false"),  # not bool("off")
        ("delete_disks", "no", "true or false"),
        ("delete_disks", True, "true needs on_remove: shutdown"),  # it would run on without
        ("on_remove", "destroy", "is not 'release' or 'shutdown'"),
        ("shutdown_timeout_s", 0, "from 1 to 3600"),
        ("shutdown_timeout_s", 3601, "from 1 to 3600"),
        ("domain_type", "xen", "'xen'"),
        ("host", {"name": "spare", "address": "198.18.3.2"}, "not one of the stack's hosts"),
        ("fleet", {"old": {"name": "old"}}, "fleet.old.address"),
        ("cutover_router", {"name": "core"}, "cutover_router.address"),
    ],
)
def test_a_wrong_field_is_named(field: str, bad: Any, said: str) -> None:
    _, failures = _check(**{field: bad})
    assert list(failures) == [field]
    assert said in failures[field]


def test_disks_are_deleted_only_with_a_shutdown() -> None:
    inputs, failures = _check(on_remove="shutdown", delete_disks=True, shutdown_timeout_s=30.0)
    assert failures == {}
    assert (inputs["on_remove"], inputs["delete_disks"]) == ("shutdown", True)
    assert inputs["shutdown_timeout_s"] == 30 and isinstance(inputs["shutdown_timeout_s"], int)
    _, failures = _check(on_remove="release", delete_disks=True)
    assert failures == {
        "delete_disks": "delete_disks: true needs on_remove: shutdown; with on_remove: release "
        "the VM keeps running on these disks"
    }
