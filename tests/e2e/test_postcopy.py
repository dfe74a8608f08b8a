"""Post-copy moves (issue 18), through the real engine on the lab: a guest that rewrites
64 MiB of its RAM without pause (`gp.dirty`) moves with `postcopy: after_first_pass`, and
the link between the hosts breaks during the post-copy phase.

From the switch on the VM runs on the target and pulls the rest of its memory from the
source, so a break leaves it split between the hosts: `up` must fail saying so, resume
neither copy on the source, and, once the link is back, the next `up` must resume the copy
(VIR_MIGRATE_POSTCOPY_RESUME) and finish the move with no write lost.

The pre-copy bandwidth is limited (`bandwidth_mib_s: 32`) so that the first memory pass
(256 MiB) takes seconds and the dirtying guest cannot converge in the next one: the
monitor's switch then always lands in the post-copy, and the post-copy limit (4 MiB/s)
keeps that phase long enough to be cut in. One slow pass, not many: lab/README.md,
"Slow memory passes".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from lab import baseline, faults, guest
from tests.e2e.conftest import GeneratedStack, lab_vm
from tests.e2e.test_faults import Background
from tests.e2e.test_preflight import running_on, wait_answers

pytestmark = [pytest.mark.e2e, pytest.mark.lab, pytest.mark.engine, pytest.mark.faults]

VM = "pcopy"
VIF = 1
DISK = f"/var/lib/libvirt/images/{VM}.img"
SWITCHED = f"{VM}: switching to post-copy"


def domstate(lab: Any, host: str) -> str:
    return str(
        lab.run(host, ["virsh", "domstate", "--reason", VM], check=False, timeout=30).stdout
    ).strip()


def test_link_broken_during_post_copy_then_the_next_up_finishes_the_move(
    lab: Any, generated_stacks: Callable[[str, dict[str, dict[str, Any]]], GeneratedStack]
) -> None:
    spec = lab_vm(
        VM,
        VIF,
        "old",
        memory_mib=256,
        migration={
            "max_downtime_ms": 300,
            "bandwidth_mib_s": 32,
            "postcopy": "after_first_pass",
            "postcopy_bandwidth_mib_s": 4,
            "timeout_s": 120,
        },
    )
    spec["boot"]["cmdline"] += " gp.dirty=64"
    ip = spec["ip"]
    stack = generated_stacks("postcopy", {VM: spec})
    assert stack.up().summary.result == "succeeded"
    assert running_on(lab, VM) == ["old"]
    wait_answers(lab, ip)
    before = guest.read_sequence("old", DISK)

    stack.move(VM, "new")
    run = Background(stack)
    at = run.wait_for(SWITCHED, timeout=90)
    time.sleep(1.0)  # into the post-copy phase (it lasts over 10 s at 4 MiB/s)
    closed = faults.cut_migration("new", "old")
    try:
        print(f"post-copy switch {at:.1f} s into up; migration streams cut:\n{closed}")
        seconds = run.join(180)
        print(f"up failed after {seconds:.1f} s")
        text = run.text()
        assert run.error is not None, "up succeeded:\n" + text[-3000:]
        assert f"{VM}: migration old -> new failed after" in text, text[-3000:]
        assert "Its memory is split between old and new (post-copy)" in text, text[-3000:]
        # Neither half was resumed on the source: it waits, paused, for the copy.
        assert domstate(lab, "old") == "paused (post-copy failed)", domstate(lab, "old")
        print("old:", domstate(lab, "old"), "| new:", domstate(lab, "new"))
    finally:
        faults.restore_migration("new")

    # While the link was broken, a refresh reads the split VM without calling it two VMs.
    stack.refresh()
    running = lab.start_probe(ip, 240)
    try:
        result = stack.up()
    finally:
        timeline = running.stop()
    assert result.summary.result == "succeeded"
    output = "".join(stack.output)
    assert f"{VM}: resuming the post-copy move old -> new" in output, output[-3000:]
    assert running_on(lab, VM) == ["new"]
    assert VM not in lab.run("old", ["virsh", "list", "--all", "--name"], timeout=30).stdout
    assert baseline.core_route() == "new"
    wait_answers(lab, ip, boot_s=10)
    after = guest.read_sequence("new", DISK)
    assert len(after) > len(before), (len(before), len(after))
    assert guest.sequence_gaps(after) == [], guest.sequence_gaps(after)
    print(f"sequence: {len(before)} -> {len(after)} records, no gap; {timeline.summary()}")
    migration = stack.outputs()["last_migrations"][VM]
    assert (migration["from"], migration["to"], migration.get("postcopy")) == ("old", "new", True)
    stack.preview()
    assert stack.changes() == [], stack.changes()
