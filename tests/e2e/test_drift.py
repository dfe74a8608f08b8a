"""Drift of every resource kind, end to end (issue 7): remove (or change) the artifact on
the host by hand; `pulumi refresh` reports the resource (update, or delete when the
artifact is gone); `pulumi up` puts it back; a preview afterwards plans nothing.

PolicyRule is covered the same way in test_move.py
(`test_drift_is_seen_by_refresh_and_repaired_by_up`); provider-level drift tests are in
tests/providers/ (MangleMark, VifRouteScript, Tunnel, Route, RoutingTable, PolicyRule).

One stack (VM `drift` on old, so old is the upstream and new carries the egress path:
table, rule, default route via the tunnel, mangle mark); one kind per test, in order.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lab import baseline, faults
from lab import topology as t
from providers.plans import vif_route_script as vif_route_plans
from tests.e2e.conftest import GeneratedStack, lab_vm
from tests.e2e.test_preflight import running_on, wait_answers

pytestmark = [pytest.mark.e2e, pytest.mark.lab, pytest.mark.engine]

VM = "drift"
VM_IP = "203.0.113.2"
SCRIPT = "/etc/libvirt/scripts/vif-route"
OWN_ROUTES = f"{SCRIPT}.d/glidepath.e2e-drift"  # the stack's own file: <project>.<stack>
RT_TABLES = "/etc/iproute2/rt_tables"


@pytest.fixture(scope="module", autouse=True)
def lab_script_restored(lab: Any) -> Iterator[None]:
    """The stack's destroy puts the lab's own vif-route script back (glidepath kept it
    beside, at its first write); should the module fail before, the lab gets it back here."""
    yield
    baseline.ensure_vif_route_script("new")


@pytest.fixture(scope="module")
def stack(
    lab: Any, generated_stacks: Callable[[str, dict[str, dict[str, Any]]], GeneratedStack]
) -> GeneratedStack:
    handle = generated_stacks("drift", {VM: lab_vm(VM, 0, "old")})
    assert handle.up().summary.result == "succeeded"
    assert running_on(lab, VM) == ["old"]
    wait_answers(lab, VM_IP)
    return handle


def _out(lab: Any, host: str, *argv: str) -> str:
    return str(lab.run(host, list(argv), timeout=30).stdout)


def _rewrite(lab: Any, host: str, path: str, keep: Callable[[str], bool]) -> None:
    # In place (tee), not by rename: the lab bind-mounts per-host files such as rt_tables.
    text = _out(lab, host, "cat", "--", path)
    kept = "".join(line for line in text.splitlines(keepends=True) if keep(line))
    lab.run(host, ["tee", "--", path], input=kept, timeout=30)


def _break_sysctl(lab: Any) -> None:
    lab.run("new", ["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1"], timeout=30)


def _sysctl_ok(lab: Any) -> bool:
    return _out(lab, "new", "sysctl", "-n", "net.ipv4.conf.all.rp_filter").strip() == "0"


def _break_script(lab: Any) -> None:
    lab.run("new", ["rm", "-f", "--", SCRIPT], timeout=30)


def _script_ok(lab: Any) -> bool:
    # glidepath's script (the same for every stack) and this stack's routes beside it.
    script = lab.run("new", ["cat", "--", SCRIPT], check=False, timeout=30).stdout
    own = lab.run("new", ["cat", "--", OWN_ROUTES], check=False, timeout=30).stdout
    return bool(script == vif_route_plans.render(SCRIPT) and f"vif0 {VM_IP}\n" in own)


def _break_tunnel(lab: Any) -> None:
    # The keeper is stopped the way glidepath stops it (TERM by its PID): it takes its
    # ssh with it and nothing restarts the link. The persistent tun2 stay, without carrier.
    keeper = faults.tunnel_keeper_pid("old", "new")
    lab.run("old", ["kill", "-TERM", str(keeper)], timeout=30)
    deadline = time.monotonic() + 15
    while _carrier(lab, "new"):
        assert time.monotonic() < deadline, "tun2 still has carrier 15 s after its keeper stopped"
        time.sleep(0.25)


def _carrier(lab: Any, host: str) -> bool:
    link = lab.run(host, ["ip", "-o", "link", "show", t.TUNNEL_DEV], check=False)
    return "LOWER_UP" in link.stdout


def _tunnel_ok(lab: Any) -> bool:
    return all(_carrier(lab, h) for h in ("old", "new"))


def _break_table(lab: Any) -> None:
    _rewrite(lab, "new", RT_TABLES, lambda line: line.split()[:2] != ["201", "vm-out"])


def _table_ok(lab: Any) -> bool:
    lines = _out(lab, "new", "cat", RT_TABLES).splitlines()
    return any(line.split() == ["201", "vm-out"] for line in lines)


def _break_route(lab: Any) -> None:
    lab.run("new", ["ip", "route", "del", "default", "table", "201"], timeout=30)


def _route_ok(lab: Any) -> bool:
    return "default via 198.18.100.1 dev tun2" in _out(
        lab, "new", "ip", "route", "show", "table", "201"
    )


def _break_mark(lab: Any) -> None:
    rules = _out(lab, "new", "iptables", "-w", "-t", "mangle", "-S", "PREROUTING")
    ours = [line for line in rules.splitlines() if "glidepath net0" in line]
    assert len(ours) == 1, rules
    # -A PREROUTING -s ... -m comment --comment "glidepath net0" -j MARK --set-xmark ...
    lab.run(
        "new",
        ["iptables", "-w", "-t", "mangle", "-D", "PREROUTING", "-s", "203.0.113.0/29",
         "-i", "vif+", "-m", "comment", "--comment", "glidepath net0",
         "-j", "MARK", "--set-xmark", "0x1/0xffffffff"],
        timeout=30,
    )  # fmt: skip


def _mark_ok(lab: Any) -> bool:
    return "glidepath net0" in _out(lab, "new", "iptables-save", "-t", "mangle")


def _break_vm(lab: Any) -> None:
    lab.run("old", ["virsh", "destroy", VM], timeout=30)


def _vm_ok(lab: Any) -> bool:
    return running_on(lab, VM) == ["old"]


def _break_upstream(lab: Any) -> None:
    baseline.switch_core("new")


def _upstream_ok(lab: Any) -> bool:
    return bool(baseline.core_route() == "old")


KINDS = {
    "Sysctl": (_break_sysctl, _sysctl_ok),
    "VifRouteScript": (_break_script, _script_ok),
    "Tunnel": (_break_tunnel, _tunnel_ok),
    "RoutingTable": (_break_table, _table_ok),
    "Route": (_break_route, _route_ok),
    "MangleMark": (_break_mark, _mark_ok),
    "VmPlacement": (_break_vm, _vm_ok),
    "Upstream": (_break_upstream, _upstream_ok),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_drift_is_reported_by_refresh_and_repaired_by_up(
    lab: Any, stack: GeneratedStack, kind: str
) -> None:
    broken, ok = KINDS[kind]
    assert ok(lab)
    broken(lab)
    assert not ok(lab)
    stack.refresh()
    seen = [(op, kind_) for op, kind_, _ in stack.changes()]
    print(f"{kind}: refresh reports {seen}")
    assert any(kind_.endswith(f":{kind}") for _, kind_ in seen), stack.steps
    stack.up()
    ups = [(op, kind_) for op, kind_, _ in stack.changes()]
    print(f"{kind}: up ran {ups}")
    assert ok(lab), f"{kind} not repaired by up"
    stack.preview()
    assert stack.changes() == [], stack.changes()
    wait_answers(lab, VM_IP)
