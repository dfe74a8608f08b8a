"""A VM's domain XML (providers/migration/domain.py): pure, the same on every host."""

from __future__ import annotations

import pytest

from providers.migration import MIB
from providers.migration.domain import DomainSpec, console_log_path, domain_xml

pytestmark = [pytest.mark.unit]


def _spec() -> DomainSpec:
    return DomainSpec.from_props(
        {
            "name": "blog",
            "memory_mib": 128,
            "vcpus": 1,
            "vif": "vif0",
            "disks": [{"path": "/var/lib/libvirt/images/blog.img", "size_mib": 64}],
            "domain_type": "kvm",
            "boot": {},
        }
    )


def test_bigger_target_disk_gets_a_storage_slice() -> None:
    xml = domain_xml(_spec(), {"/var/lib/libvirt/images/blog.img": 64 * MIB})
    assert f"<slice type='storage' offset='0' size='{64 * MIB}'/>" in xml
    assert '<target dev="vif0"/>' in xml
    assert '<script path="/etc/libvirt/scripts/vif-route"/>' in xml


def test_same_vm_same_mac_and_uuid_everywhere() -> None:
    assert domain_xml(_spec()) == domain_xml(_spec())
    assert _spec().mac.startswith("52:54:00:")


def test_the_console_goes_to_the_log_the_lab_reads() -> None:
    assert console_log_path("blog") == "/var/log/libvirt/qemu/blog-console.log"
    assert f"<source path=\"{console_log_path('blog')}\" append='on'/>" in domain_xml(_spec())


def _block_spec() -> DomainSpec:
    props = {
        "name": "blog",
        "memory_mib": 128,
        "vcpus": 1,
        "vif": "vif0",
        "disks": [{"path": "/dev/vg0/blog", "size_mib": 64}, {"path": "/d.img", "size_mib": 8}],
        "domain_type": "kvm",
        "boot": {},
    }
    return DomainSpec.from_props(props)


def test_a_disk_under_dev_is_a_block_device_opened_direct() -> None:
    xml = domain_xml(_block_spec())
    assert (
        "    <disk type='block' device='disk'>\n"
        "      <driver name='qemu' type='raw' cache='none' io='native'/>\n"
        '      <source dev="/dev/vg0/blog"/>\n'
        "      <target dev=\"vda\" bus='virtio'/>\n"
        "    </disk>\n"
        "    <disk type='file' device='disk'>\n"
        "      <driver name='qemu' type='raw'/>\n"
        '      <source file="/d.img"/>\n'
    ) in xml


def test_a_bigger_target_volume_gets_a_storage_slice_too() -> None:
    xml = domain_xml(_block_spec(), {"/dev/vg0/blog": 64 * MIB})
    assert (
        "<source dev=\"/dev/vg0/blog\"><slices><slice type='storage' offset='0' "
        f"size='{64 * MIB}'/></slices></source>"
    ) in xml
