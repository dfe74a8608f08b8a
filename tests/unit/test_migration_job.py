"""The libvirt job of a move (providers/migration/job.py): what migrate3 is asked for,
and what a failed move does to the VM on its source."""

from __future__ import annotations

import libvirt
import pytest

from providers.migration import job, path
from providers.migration.domain import DomainSpec, domain_xml
from providers.migration.path import Path
from providers.schema.vm_placement import Migration

pytestmark = [pytest.mark.unit]

SPEC = DomainSpec.from_props(
    {
        "name": "blog",
        "memory_mib": 128,
        "vcpus": 1,
        "vif": "vif0",
        "disks": [{"path": "/a.img", "size_mib": 64}, {"path": "/b.img", "size_mib": 8}],
        "domain_type": "qemu",
        "boot": {},
    }
)
ONE_OWNER = (
    libvirt.VIR_MIGRATE_LIVE
    | libvirt.VIR_MIGRATE_NON_SHARED_DISK
    | libvirt.VIR_MIGRATE_PERSIST_DEST
    | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
)


def test_a_live_copy_with_one_owner_throttled_unless_told_not_to() -> None:
    assert job.flags(Migration()) == ONE_OWNER | libvirt.VIR_MIGRATE_AUTO_CONVERGE
    assert job.flags(Migration(auto_converge=False)) == ONE_OWNER


def test_params_name_the_destination_xml_the_disks_and_a_bandwidth_if_set() -> None:
    slices = {"/a.img": 64 * 1024 * 1024}
    xml, targets = job.destination(SPEC, "", slices)
    assert (xml, targets) == (domain_xml(SPEC, slices), ["vda", "vdb"])
    assert job.params(xml, targets, Migration(), Path(None)) == {
        libvirt.VIR_MIGRATE_PARAM_DEST_XML: domain_xml(SPEC, slices),
        libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS: ["vda", "vdb"],
    }
    limited = job.params(xml, targets, Migration(bandwidth_mib_s=5), Path(None))
    assert limited[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] == 5


def test_through_the_tunnel_memory_and_disks_listen_and_connect_on_its_address() -> None:
    value = job.params("<domain/>", ["vda"], Migration(), Path("198.18.100.2"))
    assert value[libvirt.VIR_MIGRATE_PARAM_URI] == "tcp://198.18.100.2"
    assert value[libvirt.VIR_MIGRATE_PARAM_DISKS_URI] == "tcp://198.18.100.2"
    assert value[libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS] == "198.18.100.2"


TUNNELS = {"old": {"new": "198.18.100.1/24"}, "new": {"old": "198.18.100.2/24"}}


def test_a_move_goes_to_the_targets_end_of_their_link() -> None:
    assert path.choose("tunnel", TUNNELS, "old", "new") == Path("198.18.100.2")
    assert path.choose("tunnel", TUNNELS, "new", "old") == Path("198.18.100.1")
    assert path.choose("direct", TUNNELS, "old", "new") == Path(None)
    assert path.choose("direct", {}, "old", "h3").describe("old", "h3") == (
        "memory and disks cross old -> h3 in clear (transport: direct)"
    )


def test_a_move_between_hosts_without_a_link_is_refused_unless_direct() -> None:
    with pytest.raises(path.NoTunnel, match="no link between old and h3 in glidepath:links"):
        path.choose("tunnel", TUNNELS, "old", "h3")


def test_ipv6_addresses_are_bracketed_in_the_uri() -> None:
    assert path.uri("2001:db8::2") == "tcp://[2001:db8::2]"


IP_ADDR = [
    {"ifname": "br0", "flags": ["UP"], "addr_info": [{"local": "198.18.2.2"}]},
    {"ifname": "tun2", "flags": ["POINTOPOINT", "UP"], "addr_info": [{"local": "198.18.100.2"}]},
    {"ifname": "tun3", "flags": ["POINTOPOINT"], "addr_info": [{"local": "198.18.101.2"}]},
]


def test_the_target_must_hold_the_address_on_an_interface_that_is_up() -> None:
    assert path.holds(IP_ADDR, "198.18.100.2")
    assert not path.holds(IP_ADDR, "198.18.101.2")  # down
    assert not path.holds(IP_ADDR, "198.18.100.9")


def test_the_source_must_reach_it_through_a_tunnel_device() -> None:
    assert path.route_device([{"dst": "198.18.100.2", "dev": "tun2"}]) == "tun2"
    assert path.route_device([]) == ""


class Domain:
    def __init__(self, state: int, active: bool) -> None:
        self._state, self._active = state, active
        self.calls: list[str] = []

    def state(self) -> tuple[int, int]:
        return self._state, 0

    def isActive(self) -> bool:
        return self._active

    def resume(self) -> None:
        self.calls.append("resume")

    def create(self) -> None:
        self.calls.append("create")


class Connection:
    def __init__(self, dom: Domain | None) -> None:
        self._dom = dom

    def lookupByName(self, name: str) -> Domain:
        if self._dom is None:
            raise libvirt.libvirtError("Domain not found")
        return self._dom


@pytest.mark.parametrize(
    ("state", "active", "calls", "said"),
    [
        (libvirt.VIR_DOMAIN_PAUSED, True, ["resume"], "The VM was paused on old and has been"),
        (libvirt.VIR_DOMAIN_RUNNING, True, [], "The VM still runs on old."),
        (libvirt.VIR_DOMAIN_SHUTOFF, False, ["create"], "The VM had stopped on old and has"),
    ],
)
def test_a_failed_move_leaves_the_vm_running_on_its_source(
    state: int, active: bool, calls: list[str], said: str
) -> None:
    dom = Domain(state, active)
    assert job.recover(Connection(dom), Connection(None), "blog", "old", "new")[1].startswith(said)
    assert dom.calls == calls


def test_a_vm_that_runs_on_the_target_is_not_resumed_on_the_source() -> None:
    """libvirt's Finish resumed it there and then the error came (a connection lost):
    resuming the source's paused copy would run the VM twice."""
    source = Domain(libvirt.VIR_DOMAIN_PAUSED, True)
    target = Domain(libvirt.VIR_DOMAIN_RUNNING, True)
    runs_on, said = job.recover(Connection(source), Connection(target), "blog", "old", "new")
    assert runs_on == "new"
    assert said.startswith("The VM runs on new: the move took place despite the error")
    assert source.calls == []


def test_a_paused_incoming_copy_on_the_target_does_not_count_as_arrived() -> None:
    source = Domain(libvirt.VIR_DOMAIN_PAUSED, True)
    target = Domain(libvirt.VIR_DOMAIN_PAUSED, True)
    assert job.recover(Connection(source), Connection(target), "blog", "old", "new")[0] == "old"
    assert source.calls == ["resume"]


def test_a_vm_gone_from_its_source_is_said_so() -> None:
    assert job.recover(Connection(None), Connection(None), "blog", "old", "new") == (
        "old",
        "The VM is no longer defined on old: check the target, then `pulumi refresh`.",
    )
