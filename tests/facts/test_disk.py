"""What a host has at a VM disk's path (providers/facts/disk.py), parsed.

Captured on this machine (util-linux 2.38, coreutils 9.1) from a loop device over a 64 MiB
scratch file, exposed as /dev/gpblkvg/lv1 in a mount namespace of its own as the lab
exposes its volumes (lab/blockdev.py), and mounted there for `disk_lsblk_mounted.json`:

    stat -L -c '%f %s %t %T' -- /dev/gpblkvg/lv1     disk_stat_block_device.txt
    stat -L -c '%f %s %t %T' -- <the scratch file>   disk_stat_file.txt
    stat -L -c '%f %s %t %T' -- /tmp                 disk_stat_directory.txt
    blockdev --getsize64 /dev/gpblkvg/lv1            disk_blockdev_getsize64.txt
    lsblk --json --output NAME,TYPE,MOUNTPOINT -- /dev/gpblkvg/lv1   disk_lsblk_*.json

Written by hand, as the tools print them, because this kernel has no device-mapper (no
LVM, no LUKS here): `disk_lsblk_held_luks_and_swap.json` (an LV opened with cryptsetup
and mounted, a kpartx partition used as swap, another unused) and `disk_vgs.json`
(lvm2's JSON report: every value a string).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from providers.facts import disk as facts

pytestmark = [pytest.mark.unit]

DATA = Path(__file__).parent / "data"


def _text(name: str) -> str:
    return (DATA / name).read_text()


def test_stat_tells_a_block_device_a_file_and_a_directory_by_the_mode_bits() -> None:
    assert facts.process_stat(_text("disk_stat_block_device.txt")) == {
        "type": "block",
        "size": 0,
        "device": "7:0",
    }
    assert facts.process_stat(_text("disk_stat_file.txt")) == {
        "type": "file",
        "size": 64 * 1024 * 1024,
        "device": "",
    }
    assert facts.process_stat(_text("disk_stat_directory.txt"))["type"] == "directory"
    # A character device (/dev/null): neither file nor volume. Major/minor are hex.
    assert facts.process_stat("21b6 0 1 3\n")["type"] == "other"
    assert facts.process_stat("61b0 0 fd 1a\n")["device"] == "253:26"


def test_a_block_device_s_size_is_blockdev_s() -> None:
    assert facts.process_size(_text("disk_blockdev_getsize64.txt")) == 64 * 1024 * 1024


def test_an_unused_volume_has_no_user() -> None:
    assert facts.process_usage(_text("disk_lsblk_unused.json")) == []


def test_a_mounted_volume_is_in_use() -> None:
    assert facts.process_usage(_text("disk_lsblk_mounted.json")) == ["mounted at /tmp/gpblk-mnt"]


def test_holders_and_what_is_mounted_on_them_are_named() -> None:
    assert facts.process_usage(_text("disk_lsblk_held_luks_and_swap.json")) == [
        "held by blog-crypt (crypt)",
        "blog-crypt mounted at /srv/blog",
        "vg0-blog1 used as swap",
    ]
    # util-linux 2.37 and later can list every mount of a device (MOUNTPOINTS): also read.
    every = '{"blockdevices": [{"name": "dm-3", "mountpoints": ["/a", "/b"]}]}'
    assert facts.process_usage(every) == ["mounted at /a", "mounted at /b"]


def test_volume_groups_by_name_in_bytes() -> None:
    assert facts.process_vgs(_text("disk_vgs.json")) == {
        "blog": {"name": "blog", "free": 0, "extent": 4 * 1024 * 1024},
        "vg0": {"name": "vg0", "free": 10733223936, "extent": 4 * 1024 * 1024},
    }
    # Without --nosuffix lvm2 appends its unit; no volume group at all is an empty report.
    with_unit = (
        '{"report": [{"vg": [{"vg_name": "a", "vg_free": "512B", "vg_extent_size": "4B"}]}]}'
    )
    assert facts.process_vgs(with_unit)["a"]["free"] == 512
    assert facts.process_vgs('{"report": [{"vg": []}]}') == {}


def test_the_disks_a_domain_opens() -> None:
    xml = """<domain type='kvm'><name>www</name><devices>
      <disk type='block' device='disk'><source dev='/dev/www/disk'/><target dev='vda'/></disk>
      <disk type='file' device='disk'><source file='/var/lib/libvirt/images/www.img'>
        <slices><slice type='storage' offset='0' size='1024'/></slices></source></disk>
      <disk type='file' device='cdrom'><target dev='sda'/></disk>
    </devices></domain>"""
    assert facts.disk_sources(xml) == ["/dev/www/disk", "/var/lib/libvirt/images/www.img"]


def test_commands_are_argv_lists() -> None:
    assert facts.stat_argv("/dev/vg0/blog") == (
        "stat",
        "-L",
        "-c",
        "%f %s %t %T",
        "--",
        "/dev/vg0/blog",
    )
    assert facts.size_argv("/dev/vg0/blog") == ("blockdev", "--getsize64", "/dev/vg0/blog")
    assert facts.usage_argv("/dev/vg0/blog")[-2:] == ("--", "/dev/vg0/blog")
