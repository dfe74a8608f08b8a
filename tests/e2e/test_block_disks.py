"""Block-device disks (issue 16), live: the blog's LVM volumes, each at the same
/dev/<vg>/<lv> on both servers, stood in for by lab volumes (a loop device at /dev/vg0/blk
in each host's own mount namespace, lab/blockdev.py: this kernel has no device-mapper, so
no LVM or LUKS here; lvcreate is tested as plans only).

A VM whose disk is old's /dev/vg0/blk (random bytes past the guest writer's sectors)
starts there as a block device. A smaller volume on new fails the preview, naming the
path and both sizes, and changes nothing. With a bigger volume on new the move works: no
write lost, the VM answers, the copied bytes are the source's, and new's domain reads the
volume through a storage slice of the source's size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pulumi import automation as auto

from lab import baseline, blockdev, guest
from lab import topology as t
from lab.stacks import remove_vm_everywhere
from tests.e2e.conftest import GeneratedStack, host_network, lab_hosts, lab_vm
from tests.e2e.test_preflight import running_on, wait_answers

pytestmark = [pytest.mark.e2e, pytest.mark.lab, pytest.mark.engine]

VM = "blk"
VM_IP = "203.0.113.2"
VOLUME = "/dev/vg0/blk"
MIB = 1024 * 1024
SIZE_MIB = 64


@pytest.fixture
def volumes(lab: Any) -> Iterator[Callable[..., blockdev.Volume]]:
    """`make(host, size_mib, random_from_mib=0)`: a lab volume at VOLUME on `host`, in
    place of any there. Afterwards (even on failure) the VM is stopped everywhere first,
    so no QEMU holds a loop device, then every volume made here is removed."""
    made: list[str] = []

    def make(host: str, size_mib: int, random_from_mib: int = 0) -> blockdev.Volume:
        made.append(host)
        return blockdev.create_volume(host, VOLUME, size_mib, random_from_mib=random_from_mib)

    try:
        yield make
    finally:
        try:
            remove_vm_everywhere([VM], [])
        finally:
            for host in dict.fromkeys(made):
                blockdev.remove_volume(host, VOLUME)


def snapshot(lab: Any) -> dict[str, Any]:
    return {
        "hosts": {h: host_network(lab, h) for h in lab_hosts()},
        "core": baseline.core_route(),
        "running": running_on(lab, VM),
        "defined": {
            h: lab.run(h, ["virsh", "list", "--all", "--name"], timeout=30).stdout.split()
            for h in lab_hosts()
        },
        "sizes": {h: guest.disk_size(h, VOLUME) for h in ("old", "new")},
    }


def _dumpxml(lab: Any, host: str) -> str:
    return str(lab.run(host, ["virsh", "dumpxml", VM], timeout=30).stdout)


def test_a_vm_on_a_volume_moves_into_a_bigger_one_and_a_smaller_one_fails_preview(
    lab: Any,
    generated_stacks: Callable[[str, dict[str, dict[str, Any]]], GeneratedStack],
    volumes: Callable[..., blockdev.Volume],
) -> None:
    volumes("old", SIZE_MIB, random_from_mib=guest.WRITER_MIB)
    volumes("new", 32)
    spec = lab_vm(VM, 0, "old", disks=[{"path": VOLUME, "size_mib": SIZE_MIB}])
    stack = generated_stacks("block", {VM: spec})
    assert stack.up().summary.result == "succeeded"
    assert running_on(lab, VM) == ["old"]
    wait_answers(lab, VM_IP)
    on_old = _dumpxml(lab, "old")
    assert "<disk type='block' device='disk'>" in on_old
    assert "cache='none'" in on_old and "io='native'" in on_old
    assert f"<source dev='{VOLUME}'" in on_old

    # new's volume is smaller than old's: the blog's rule refuses it at preview.
    before = snapshot(lab)
    assert before["core"] == "old"
    stack.move(VM, "new")
    with pytest.raises(auto.CommandError) as preview_error:
        stack.preview()
    message = str(preview_error.value) + "\n".join(stack.output)
    print("preview failed with:", message[-2000:])
    assert f"{VM}: cannot move old -> new" in message
    assert (
        f"{VOLUME}: the target volume on new is 32 MiB, smaller than the source's 64 MiB on "
        "old; grow it (lvextend) or remove it"
    ) in message
    assert snapshot(lab) == before  # nothing changed anywhere

    # A bigger volume in its place: the move works, into a slice of the source's size.
    volumes("new", 96)
    writes_before = guest.read_sequence("old", VOLUME)
    probe = lab.start_probe(VM_IP, 240)
    try:
        result = stack.up()
    finally:
        timeline = probe.stop()
    print(timeline.summary())
    assert result.summary.result == "succeeded"
    assert running_on(lab, VM) == ["new"]
    assert baseline.core_route() == "new"
    wait_answers(lab, VM_IP, boot_s=5)
    writes_after = guest.read_sequence("new", VOLUME)
    assert len(writes_after) > len(writes_before)
    assert guest.sequence_gaps(writes_after) == []
    assert timeline.longest_gap_ms < 3000, timeline.summary()
    on_new = _dumpxml(lab, "new")
    assert "<disk type='block' device='disk'>" in on_new
    assert f"<slice type='storage' offset='0' size='{SIZE_MIB * MIB}'/>" in on_new
    # The copy is the source's, byte for byte past the writer's sectors; the rest of the
    # bigger volume is untouched.
    with (
        open(t.disk_file("old", VOLUME), "rb") as old,
        open(t.disk_file("new", VOLUME), "rb") as new,
    ):
        old.seek(guest.WRITER_MIB * MIB)
        new.seek(guest.WRITER_MIB * MIB)
        assert old.read() == new.read((SIZE_MIB - guest.WRITER_MIB) * MIB)
        assert new.read() == bytes(32 * MIB)
    migration = stack.outputs()["last_migrations"][VM]
    print("last_migration:", migration)
    assert (migration["from"], migration["to"]) == ("old", "new")
