"""Issue 17: a server's VMs move in one `pulumi up` (four of the /29: vif0..vif3), old ->
new and back, as the blog empties a server: the client pings each VM and holds a TCP
stream to each throughout. Every VM answers through the move with a longest gap under
one second, keeps its stream (no reset, every byte in order), loses no disk write, and
the network cuts over once, after the last VM has moved."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from lab import guest
from tests.e2e.conftest import GeneratedStack, lab_vm
from tests.e2e.test_preflight import running_on, wait_answers

pytestmark = [pytest.mark.e2e, pytest.mark.lab, pytest.mark.engine]

VMS = {f"w{vif}": vif for vif in range(4)}
MAX_GAP_MS = 1000
SWITCH = re.compile(r"\bnet0: switching 203\.0\.113\.0/29 to (\w+)")


@pytest.fixture(scope="module")
def stack(
    lab: Any, generated_stacks: Callable[[str, dict[str, dict[str, Any]]], GeneratedStack]
) -> GeneratedStack:
    handle = generated_stacks(
        "whole-server", {name: lab_vm(name, vif, "old") for name, vif in VMS.items()}
    )
    assert handle.up().summary.result == "succeeded"
    for name in VMS:
        wait_answers(lab, handle.vms()[name]["ip"])
    return handle


@pytest.mark.parametrize("target", ["new", "old"])
def test_the_whole_server_moves_in_one_up_with_its_connections(
    lab: Any, stack: GeneratedStack, target: str
) -> None:
    for name in VMS:
        stack.raw["config"]["glidepath:vms"][name]["host"] = target
    stack.save()
    ips = {name: stack.vms()[name]["ip"] for name in VMS}
    written = {
        name: guest.read_sequence(running_on(lab, name)[0], disk(stack, name)) for name in VMS
    }
    probes = {name: lab.start_probe(ip, 300, tcp=True) for name, ip in ips.items()}
    try:
        result = stack.up()
    finally:
        timelines = {name: running.stop() for name, running in probes.items()}
    assert result.summary.result == "succeeded"
    for name, timeline in timelines.items():
        print(f"{name} -> {target}: {timeline.summary()}")
    # One cutover, to the target, after the last VM has moved (the CLI repeats provider
    # messages in its closing diagnostics: the same line twice is one switch).
    assert {m[1] for line in stack.output for m in [SWITCH.search(line)] if m} == {target}
    outputs = stack.outputs()
    cutover = outputs["last_cutovers"]["net0"]
    assert cutover["to"] == target
    moved = [outputs["last_migrations"][name] for name in VMS]
    assert all(record["to"] == target for record in moved), moved
    assert cutover["at"] >= max(record["at"] for record in moved)
    for name, timeline in timelines.items():
        assert running_on(lab, name) == [target], name
        assert timeline.longest_gap_ms < MAX_GAP_MS, (name, timeline.summary())
        assert not timeline.tcp_broken, (name, timeline.tcp)
        assert int(str(timeline.tcp["numbers"])) > 100, (name, timeline.tcp)
        after = guest.read_sequence(target, disk(stack, name))
        assert len(after) > len(written[name]), name
        assert guest.sequence_gaps(after) == [], name


def disk(stack: GeneratedStack, name: str) -> str:
    return str(stack.vms()[name]["disks"][0]["path"])
