"""Adopting a VM defined by hand (issue 16): the stack says only where it runs and its
network; its definition is read from libvirt and never rewritten. And the fields a
generated definition gains (vCPUs, CPU model, MAC)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from components.config import ConfigError, parse_config
from providers.migration import live_xml
from providers.migration.domain import DomainSpec, domain_xml
from tests.unit.test_config import GOOD

pytestmark = [pytest.mark.unit]

HAND_MADE = """<domain type='qemu' id='7'>
  <name>legacy</name>
  <memory unit='KiB'>262144</memory>
  <vcpu placement='static'>2</vcpu>
  <devices>
    <disk type='block' device='disk'>
      <driver name='qemu' type='raw' cache='none'/>
      <source dev='/dev/vg0/legacy'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <source file='/srv/legacy-data.img'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <source file='/srv/install.iso'/>
      <target dev='sda' bus='sata'/>
      <readonly/>
    </disk>
    <disk type='file' device='disk'>
      <source file='/srv/shared.img'/>
      <target dev='vdc' bus='virtio'/>
      <shareable/>
    </disk>
    <interface type='ethernet'>
      <mac address='02:11:22:33:44:55'/>
      <target dev='vif5'/>
    </interface>
  </devices>
</domain>"""


def test_a_move_copies_its_writable_own_disks_only() -> None:
    assert live_xml.disks(HAND_MADE) == [
        live_xml.LiveDisk("/dev/vg0/legacy", "vda"),
        live_xml.LiveDisk("/srv/legacy-data.img", "vdb"),
    ]
    assert live_xml.interface_targets(HAND_MADE) == ["vif5"]


def test_a_bigger_target_gets_a_slice_and_nothing_else_changes() -> None:
    assert live_xml.with_slices(HAND_MADE, {}) == HAND_MADE
    sliced = live_xml.with_slices(HAND_MADE, {"/dev/vg0/legacy": 64 << 20})
    assert '<slice type="storage" offset="0" size="67108864" />' in sliced
    assert sliced.count("<slice ") == 1
    assert live_xml.disks(sliced) == live_xml.disks(HAND_MADE)
    assert '<mac address="02:11:22:33:44:55" />' in sliced


def _adopted(**extra: Any) -> dict[str, Any]:
    raw = copy.deepcopy(GOOD)
    raw["vms"]["blog"] = {
        "host": "old",
        "network": "net0",
        "ip": "203.0.113.2",
        "vif": "vif0",
        "adopt": True,
        **extra,
    }
    return raw


def test_an_adopted_vm_needs_only_its_place_and_its_network() -> None:
    vm = parse_config(_adopted()).vms["blog"]
    assert vm.adopt and vm.disks == []


@pytest.mark.parametrize("field", ["memory_mib", "vcpus", "disks", "mac", "cpu_model"])
def test_an_adopted_vm_refuses_definition_fields(field: str) -> None:
    value = {
        "memory_mib": 256,
        "vcpus": 2,
        "disks": [{"path": "/d.img", "size_mib": 1}],
        "mac": "52:54:00:00:00:01",
        "cpu_model": "host-model",
    }[field]
    with pytest.raises(ConfigError) as refused:
        parse_config(_adopted(**{field: value}))
    assert f"glidepath:vms.blog.{field}: an adopted VM keeps its own definition" in str(
        refused.value
    )


def _spec(**props: Any) -> DomainSpec:
    return DomainSpec.from_props(
        {
            "name": "blog",
            "memory_mib": 128,
            "vcpus": 1,
            "vif": "vif0",
            "disks": [],
            "domain_type": "kvm",
            "boot": {},
            **props,
        }
    )


def test_a_generated_definition_takes_vcpus_cpu_model_and_mac() -> None:
    xml = domain_xml(_spec(vcpus=4, cpu_model="host-passthrough", mac="02:aa:bb:cc:dd:ee"))
    assert "<vcpu>4</vcpu>" in xml
    assert '<cpu mode="host-passthrough"/>' in xml
    assert '<mac address="02:aa:bb:cc:dd:ee"/>' in xml
    named = domain_xml(_spec(cpu_model="EPYC"))
    assert "<model fallback='forbid'>EPYC</model>" in named
    assert "<cpu" not in domain_xml(_spec())


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("mac", "01:00:5e:00:00:01", "multicast"),
        ("mac", "52:54:00:zz:00:01", "not a MAC address"),
        ("cpu_model", "host passthrough", "use host-passthrough"),
        ("vcpus", 0, ""),
    ],
)
def test_generated_fields_are_checked(field: str, value: Any, said: str) -> None:
    raw = copy.deepcopy(GOOD)
    raw["vms"]["blog"][field] = value
    with pytest.raises(ConfigError) as refused:
        parse_config(raw)
    assert f"glidepath:vms.blog.{field}" in str(refused.value)
    assert said in str(refused.value)
