"""A failing pre-flight (issue 5): the target disk path on `new` is taken by a smaller
file. `preview` fails naming the path and both sizes, and nothing changes on any host;
`up` fails before migrating; once the file is gone the same move works."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from pulumi import automation as auto

from lab import baseline, guest
from tests.e2e.conftest import GeneratedStack, host_network, lab_hosts, lab_vm

pytestmark = [pytest.mark.e2e, pytest.mark.lab, pytest.mark.engine]

VM = "pf"
VM_IP = "203.0.113.2"
DISK = f"/var/lib/libvirt/images/{VM}.img"


def running_on(lab: Any, vm: str) -> list[str]:
    return [
        h
        for h in lab_hosts()
        if vm
        in lab.run(h, ["virsh", "list", "--name", "--state-running"], timeout=30).stdout.split()
    ]


def wait_answers(lab: Any, ip: str, boot_s: float = 60) -> None:
    """Bounded: the VM answers within `boot_s` (it may be booting)."""
    deadline = time.monotonic() + boot_s
    while lab.probe(ip, 1).received == 0:
        assert time.monotonic() < deadline, f"{ip} does not answer after {boot_s} s"
    result = lab.probe(ip, 2)
    print(result.summary())
    assert result.received > 0.8 * result.sent, result.summary()


def snapshot(lab: Any) -> dict[str, Any]:
    return {
        "hosts": {h: host_network(lab, h) for h in lab_hosts()},
        "core": baseline.core_route(),
        "running": running_on(lab, VM),
        "defined": {
            h: lab.run(h, ["virsh", "list", "--all", "--name"], timeout=30).stdout.split()
            for h in lab_hosts()
        },
    }


def _size(lab: Any, host: str, path: str) -> int:
    return int(lab.run(host, ["stat", "-c", "%s", "--", path], timeout=30).stdout)


def test_smaller_target_disk_fails_preview_and_up_then_the_move_works(
    lab: Any, generated_stacks: Callable[[str, dict[str, dict[str, Any]]], GeneratedStack]
) -> None:
    stack = generated_stacks("preflight", {VM: lab_vm(VM, 0, "old")})
    assert stack.up().summary.result == "succeeded"
    assert running_on(lab, VM) == ["old"]
    wait_answers(lab, VM_IP)

    # Occupy the target path with a smaller file, by hand.
    lab.run("new", ["truncate", "-s", "16M", DISK], timeout=30)
    before = snapshot(lab)
    assert before["core"] == "old"

    stack.move(VM, "new")
    with pytest.raises(auto.CommandError) as preview_error:
        stack.preview()
    message = str(preview_error.value) + "\n".join(stack.output)
    print("preview failed with:", message[-2000:])
    assert f"{VM}: cannot move old -> new" in message
    assert DISK in message
    assert "the target file is 16 MiB, smaller than the source's 64 MiB" in message
    assert "grow or remove it" in message
    # Nothing changed anywhere: same host network on every host, same core route, the VM
    # runs only on old, no domain defined on new, the file untouched.
    after = snapshot(lab)
    assert after == before
    assert _size(lab, "new", DISK) == 16 * 1024 * 1024

    with pytest.raises(auto.CommandError) as up_error:
        stack.up()
    up_text = str(up_error.value) + "\n".join(stack.output)
    assert "the target file is 16 MiB, smaller than the source's 64 MiB" in up_text
    assert f"{VM}: migrating old -> new" not in up_text  # failed before migrating
    assert running_on(lab, VM) == ["old"]
    assert VM not in lab.run("new", ["virsh", "list", "--all", "--name"], timeout=30).stdout
    assert baseline.core_route() == "old"
    assert _size(lab, "new", DISK) == 16 * 1024 * 1024
    wait_answers(lab, VM_IP, boot_s=5)

    # What to fix, fixed: the move now works.
    lab.run("new", ["rm", "-f", "--", DISK], timeout=30)
    writes_before = guest.read_sequence("old", DISK)
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
    writes_after = guest.read_sequence("new", DISK)
    assert len(writes_after) > len(writes_before)
    assert guest.sequence_gaps(writes_after) == []
    assert timeline.longest_gap_ms < 3000, timeline.summary()
    migration = stack.outputs()["last_migrations"][VM]
    print("last_migration:", migration)
    assert (migration["from"], migration["to"]) == ("old", "new")
