"""The egress mark goes only with proof: a packet for the prefix that arrived directly at
the new upstream (the blog's `tcpdump ... && iptables -D`), never because a watch ran out.

A `manual` cutover where nobody switches: VM `proof` (vif2) moves old -> new with
`upstream: auto`, so the prefix should follow it, but core keeps routing it to old.
1. `up` fails after the watch (5 s here) and says what happened and what to do; new keeps
   its egress mark, so `proof` on new still reaches the client both ways (in through old
   and the tunnel, out marked through the tunnel and old); nothing is cut.
2. The operator switches (core routes the prefix to new), and the next `up` watches again:
   the client's packets arrive directly, new's mark goes, old's comes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pulumi import automation as auto

from lab import baseline
from tests.e2e.conftest import GeneratedStack, lab_vm
from tests.e2e.test_preflight import running_on, wait_answers

pytestmark = [pytest.mark.e2e, pytest.mark.lab, pytest.mark.engine]

VM, VIF, IP = "proof", 2, "203.0.113.4"
WATCH_S = 5
MARK = '--comment "glidepath net0" -j MARK --set-xmark 0x1/0xffffffff'


def _marked(lab: Any, host: str) -> bool:
    return MARK in lab.run(host, ["iptables-save", "-t", "mangle"], timeout=30).stdout


def _answers_both_ways(lab: Any) -> None:
    """Replies reach the client: in through core, out through whichever path is right
    (core drops replies that arrive from a host it does not route the prefix to)."""
    wait_answers(lab, IP, boot_s=10)
    result = lab.probe(IP, 2)
    assert result.received > 0.8 * result.sent, result.summary()


@pytest.fixture(scope="module")
def stack(
    lab: Any, generated_stacks: Callable[[str, dict[str, dict[str, Any]]], GeneratedStack]
) -> GeneratedStack:
    handle = generated_stacks("egress-proof", {VM: lab_vm(VM, VIF, "old")})
    networks = handle.config["glidepath:networks"]
    networks["net0"]["cutover"] = {"kind": "manual", "first_packet_timeout_s": WATCH_S}
    handle.set("networks", networks)
    return handle


def test_no_packet_keeps_the_mark_and_says_so(lab: Any, stack: GeneratedStack) -> None:
    assert stack.up().summary.result == "succeeded"
    assert running_on(lab, VM) == ["old"]
    assert baseline.core_route() == "old"
    assert _marked(lab, "new") and not _marked(lab, "old")
    _answers_both_ways(lab)

    stack.move(VM, "new")
    with pytest.raises(auto.CommandError) as failed:
        stack.up()
    message = str(failed.value)
    assert f"no packet for 203.0.113.0/29 arrived directly at new (br0) within {WATCH_S} s" in (
        message
    )
    assert "new's egress mark stays" in message
    assert "Route 203.0.113.0/29 to 198.18.2.2 at your provider" in message
    # The VM moved; the prefix did not: new keeps its mark, and the VM still answers
    # through old and the tunnel, both ways.
    assert running_on(lab, VM) == ["new"]
    assert baseline.core_route() == "old"
    assert _marked(lab, "new")
    _answers_both_ways(lab)


def test_the_next_up_waits_for_the_packet_then_moves_the_egress(
    lab: Any, stack: GeneratedStack
) -> None:
    assert _marked(lab, "new")
    baseline.switch_core("new")  # the operator, at the provider
    probe = lab.start_probe(IP, 60)  # real traffic: what the watch waits for
    try:
        result = stack.up()
    finally:
        probe.stop()
    assert result.summary.result == "succeeded"
    assert any("net0: first packet on new" in line for line in stack.output), stack.output
    assert not _marked(lab, "new") and _marked(lab, "old")
    _answers_both_ways(lab)
    stack.preview()
    assert stack.changes() == []
