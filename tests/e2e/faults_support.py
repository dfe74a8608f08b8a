"""Faults during a move (issue 7), through the real engine on the lab.

One VM (`flt`, 128 MiB disk of random data, migration bandwidth 8 MiB/s: a move takes
about 30 s) moves between old and new; each test injects one fault into a move while the
progress output shows the migration running, then checks what DESIGN.md §7 asks of a
failed or disturbed move:

- the VM runs on exactly one host, and the guest's on-disk write sequence has no gap;
- `pulumi refresh` leaves a consistent stack: the state says where the VM runs and where
  core routes the prefix, and a second refresh finds nothing more to change;
- once the fault is removed, `pulumi up` completes the move (VM on the target, prefix
  routed there, a preview after it plans nothing).

The stack fixture and helpers of the fault tests. The tests themselves are parked in
faults_pending.py (not collected by pytest) until the lab guest survives them (see
there). The target disk too small at preview is covered by test_preflight.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from pulumi import automation as auto

from lab import baseline, guest
from tests.e2e.conftest import GeneratedStack, lab_vm
from tests.e2e.test_preflight import running_on, wait_answers

pytestmark = [pytest.mark.e2e, pytest.mark.lab, pytest.mark.engine, pytest.mark.faults]

VM = "flt"
VM_IP = "203.0.113.2"
DISK = f"/var/lib/libvirt/images/{VM}.img"
DISK_MIB = 128
BANDWIDTH_MIB_S = 8
TIMEOUT_S = 90  # the move's own abort (migration.timeout_s)
MIGRATING = f"{VM}: migrating ("
LINK_CUT_S = 20


def other(host: str) -> str:
    return "new" if host == "old" else "old"


@pytest.fixture(scope="module")
def stack(
    lab: Any, generated_stacks: Callable[[str, dict[str, dict[str, Any]]], GeneratedStack]
) -> GeneratedStack:
    spec = lab_vm(
        VM,
        0,
        "old",
        disks=[{"path": DISK, "size_mib": DISK_MIB}],
        migration={
            "max_downtime_ms": 100,
            "bandwidth_mib_s": BANDWIDTH_MIB_S,
            # No CPU throttling: after long throttled moves the lab's 1-vCPU TCG guest
            # often hung in virtio_net (soft lockup in virtnet_poll_tx, console log);
            # the max downtime steps make it converge instead.
            "auto_converge": False,
            "timeout_s": TIMEOUT_S,
        },
    )
    handle = generated_stacks("faults", {VM: spec})
    guest.create_random_disk("old", DISK, DISK_MIB)
    assert handle.up().summary.result == "succeeded"
    assert running_on(lab, VM) == ["old"]
    wait_answers(lab, VM_IP)
    return handle


# --- helpers ---------------------------------------------------------------------------


class Background:
    """`pulumi up` in a thread; the test thread injects the fault meanwhile."""

    def __init__(self, stack: GeneratedStack) -> None:
        self.stack = stack
        self.mark = len(stack.stamped)
        self.started = time.monotonic()
        self.result: auto.UpResult | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="pulumi-up", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result = self.stack.up()
        except BaseException as err:  # reported by the test
            self.error = err

    def lines(self) -> list[str]:
        return [line for _, line in self.stack.stamped[self.mark :]]

    def wait_for(self, text: str, timeout: float = 90) -> float:
        """Bounded: seconds since `up` started when a line containing `text` appeared."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, line in self.stack.stamped[self.mark :]:
                if text in line:
                    return at - self.started
            if not self.thread.is_alive():
                break
            time.sleep(0.1)
        raise AssertionError(f"no line with {text!r} within {timeout} s:\n" + "".join(self.lines()))

    def join(self, timeout: float = 240) -> float:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"pulumi up still running after {timeout} s"
        return time.monotonic() - self.started

    def text(self) -> str:
        return str(self.error or "") + "\n" + "\n".join(self.lines())


@contextmanager
def probing(lab: Any, seconds: float = 300) -> Iterator[list[Any]]:
    """A probe from client for the duration; yields a list that then holds its result."""
    running = lab.start_probe(VM_IP, seconds)
    result: list[Any] = []
    try:
        yield result
    finally:
        result.append(running.stop())
        print(result[0].summary())


def where(lab: Any) -> str:
    hosts = running_on(lab, VM)
    assert len(hosts) == 1, f"{VM} runs on {hosts}"
    return hosts[0]


def resources(stack: GeneratedStack) -> dict[str, dict[str, Any]]:
    """The stored outputs of each resource, by type name and resource name."""
    deployment = stack.stack.export_stack().deployment or {}
    found = {}
    for res in deployment.get("resources", []):
        urn = str(res.get("urn", ""))
        kind = str(res.get("type", "")).rsplit(":", 1)[-1]
        found[f"{kind}/{urn.rsplit('::', 1)[-1]}"] = res.get("outputs", {})
    return found


def stored_host(stack: GeneratedStack) -> str:
    return str(resources(stack)[f"VmPlacement/{VM}"]["host"]["name"])


def stored_upstream(stack: GeneratedStack) -> str:
    upstreams = [v for k, v in resources(stack).items() if k.startswith("Upstream/")]
    assert len(upstreams) == 1
    return str(upstreams[0]["upstream"])


def assert_nothing_lost(lab: Any, host: str, before: list[int]) -> None:
    """The guest on `host` answers and its write sequence went on without a hole."""
    wait_answers(lab, VM_IP, boot_s=10)
    after = guest.read_sequence(host, DISK)
    assert len(after) > len(before), (len(before), len(after))
    assert guest.sequence_gaps(after) == [], guest.sequence_gaps(after)
    print(f"sequence: {len(before)} -> {len(after)} records, no gap")


def refresh_is_consistent(lab: Any, stack: GeneratedStack) -> None:
    """After a refresh the state says where the VM runs and where core routes the
    prefix; a second refresh changes nothing."""
    stack.refresh()
    print("refresh changes:", stack.changes())
    assert stored_host(stack) == where(lab)
    assert stored_upstream(stack) == baseline.core_route()
    stack.refresh()
    assert stack.changes() == [], stack.changes()


def completes(lab: Any, stack: GeneratedStack, target: str, before: list[int]) -> None:
    """`pulumi up` finishes the move to `target`; afterwards nothing is left to do."""
    with probing(lab, 240):
        result = stack.up()
    assert result.summary.result == "succeeded"
    assert where(lab) == target
    assert baseline.core_route() == target
    assert_nothing_lost(lab, target, before)
    stack.preview()
    assert stack.changes() == [], stack.changes()


def no_domain_left(lab: Any, host: str) -> None:
    defined = lab.run(host, ["virsh", "list", "--all", "--name"], timeout=30).stdout.split()
    assert VM not in defined, f"{VM} still defined on {host}: {defined}"
