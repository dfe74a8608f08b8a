"""Adopting a VM defined and started by hand (issue 16), through the real engine.

`legacy` is defined with XML glidepath would not write (2 vCPUs, its own MAC and UUID,
a description, its disk a block device: a lab volume at /dev/vg1/legacy, as the blog's
LVs) and started by hand on old; new has a volume of the same size at the same path. A
stack that says only `host: old`, its network, address, tap and `adopt: true` takes it
over: no probe
reply lost, the domain not restarted (same QEMU PID), its definition unchanged. Then it
moves old -> new and back with no guest write lost, and its definition after the moves
is the one it had, but for what libvirt itself writes into a migrated definition.
"""

from __future__ import annotations

import difflib
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lab import blockdev, guest
from tests.e2e.conftest import GeneratedStack
from tests.e2e.test_preflight import running_on, wait_answers

pytestmark = [pytest.mark.e2e, pytest.mark.lab, pytest.mark.engine]

VM = guest.VmSpec("legacy", vif=4)
VOLUME = "/dev/vg1/legacy"
OWN_MAC = "02:47:50:00:00:04"
OWN_UUID = "6f1c1d2e-0000-4000-8000-00000000cafe"


def hand_made_xml(domain_type: str) -> str:
    """The lab guest's definition, changed where an operator's own would differ."""
    root = ET.fromstring(guest.domain_xml(VM, domain_type=domain_type))  # noqa: S314
    root.find("uuid").text = OWN_UUID  # type: ignore[union-attr]
    root.find("vcpu").text = "2"  # type: ignore[union-attr]
    description = ET.Element("description")
    description.text = "defined by hand, years ago"
    root.insert(2, description)
    root.find("devices/interface/mac").set("address", OWN_MAC)  # type: ignore[union-attr]
    disk = root.find("devices/disk")
    assert disk is not None
    disk.set("type", "block")
    disk.find("driver").attrib.update({"cache": "none", "io": "native"})  # type: ignore[union-attr]
    source = disk.find("source")
    assert source is not None
    source.attrib.clear()
    source.set("dev", VOLUME)
    return ET.tostring(root, encoding="unicode")


#: The definition on old before glidepath took the VM over (test 1 reads it).
ORIGINAL: dict[str, str] = {}


def definition(lab: Any, host: str) -> str:
    return str(lab.run(host, ["virsh", "dumpxml", "--inactive", VM.name], timeout=30).stdout)


def qemu_pid(lab: Any, host: str) -> int:
    text = lab.run(host, ["cat", f"/run/libvirt/qemu/{VM.name}.pid"], timeout=30).stdout
    return int(text.split()[0])


@pytest.fixture(scope="module")
def stack(
    lab: Any, generated_stacks: Callable[[str, dict[str, dict[str, Any]]], GeneratedStack]
) -> Iterator[GeneratedStack]:
    entry = {"host": "old", "network": "net0", "ip": VM.ip, "vif": VM.tap, "adopt": True}
    handle = generated_stacks("adoption", {VM.name: entry})
    # By hand, as the operator did before glidepath: its disk, its definition, started.
    dtype = "kvm" if guest.kvm_usable() else "qemu"
    guest.ensure_image()
    for host in ("old", "new"):
        blockdev.create_volume(host, VOLUME, VM.disk_mib)
    lab.run("old", ["virsh", "define", "/dev/stdin"], input=hand_made_xml(dtype))
    lab.run("old", ["virsh", "start", VM.name], timeout=60)
    guest.wait_ready("old", VM)
    try:
        yield handle
    finally:
        for host in ("old", "new"):
            guest.remove_vm(host, VM.name)
        for host in ("old", "new"):
            blockdev.remove_volume(host, VOLUME)


def test_1_up_adopts_the_running_vm_unchanged(lab: Any, stack: GeneratedStack) -> None:
    wait_answers(lab, VM.ip)
    before, pid = definition(lab, "old"), qemu_pid(lab, "old")
    probe = lab.start_probe(VM.ip, 120)
    try:
        assert stack.up().summary.result == "succeeded"
    finally:
        timeline = probe.stop()
    print(timeline.summary())
    assert timeline.lost == 0, timeline.summary()
    assert any(f"{VM.name}: adopted on old as it is (running)" in line for line in stack.output)
    assert qemu_pid(lab, "old") == pid  # not restarted
    assert definition(lab, "old") == before
    ORIGINAL["xml"] = before
    stack.preview()
    assert stack.changes() == [], stack.changes()


def _differences(before: str, after: str) -> list[str]:
    return [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="")
        if line[:1] in "+-" and line[:3] not in ("+++", "---")
    ]


@pytest.mark.parametrize(("source", "target"), [("old", "new"), ("new", "old")])
def test_2_moves_with_its_own_definition(
    lab: Any, stack: GeneratedStack, source: str, target: str
) -> None:
    writes_before = guest.read_sequence(source, VOLUME)
    stack.move(VM.name, target)
    assert stack.up().summary.result == "succeeded"
    assert running_on(lab, VM.name) == [target]
    wait_answers(lab, VM.ip, boot_s=10)
    writes = guest.read_sequence(target, VOLUME)
    assert len(writes) > len(writes_before)
    assert guest.sequence_gaps(writes) == [], guest.sequence_gaps(writes)
    after = definition(lab, target)
    root = ET.fromstring(after)  # noqa: S314
    assert root.findtext("uuid") == OWN_UUID
    assert root.findtext("vcpu") == "2"
    assert root.findtext("description") == "defined by hand, years ago"
    assert root.find("devices/interface/mac").get("address") == OWN_MAC  # type: ignore[union-attr]
    assert root.find("devices/disk/source").get("dev") == VOLUME  # type: ignore[union-attr]
    # Against the definition as it was on old before glidepath (libvirt's own rendering
    # of what the operator wrote): what a migration changes, and nothing else.
    differences = _differences(ORIGINAL["xml"], after)
    print("\n".join(differences) or "no difference")
    assert differences == []
