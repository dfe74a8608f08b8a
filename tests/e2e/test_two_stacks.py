"""Two stacks on the same hosts (the architecture issue: a benchmark's stack, destroyed,
took the vif-route script from under the `lab` stack, whose VM then failed to start).

Both stacks hold the host artifacts every stack declares per host: the vif-route script
(each with its own file of routes beside it) and the forwarding sysctls (each with its
owner file). Everything else each declares is its own: the first is a copy of the lab
stack (network net0, the old-new link, VM `own-a` on vif4); the second has a network of
its own (net1, same prefix, which core routes to old) and no link, so its only tie to the
first is what the hosts share (VM `own-b` on vif5). No other e2e test uses vif4 or vif5.

1. both `up`; 2. the second is destroyed: the script and the sysctls stay, held by the
first (`... left for glidepath.e2e-owners-a`); 3. the first's VM restarts on old (libvirt
runs the script at tap creation) and answers, and a refresh of the first finds nothing
changed; 4. the first is destroyed: the lab's own script and the sysctls' values from
before either stack are back. Each destroy releases its stack's VM (on_remove's
default), which the test then removes by hand. To see that last part, `new` starts with
other values for two of the sysctls (the lab's own are glidepath's); they are put back
afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from components.host import FORWARDING_SYSCTLS
from lab import baseline, config
from lab import topology as t
from lab.stacks import remove_vm_everywhere
from providers.plans import vif_route_script as vif_route_plans
from tests.e2e.conftest import GeneratedStack, lab_vm
from tests.e2e.test_preflight import running_on, wait_answers

pytestmark = [pytest.mark.e2e, pytest.mark.lab, pytest.mark.engine]

HOSTS = ("old", "new")
SCRIPT = "/etc/libvirt/scripts/vif-route"
ROUTE_FILES = f"{SCRIPT}.d"
SAVED = f"{SCRIPT}.before-glidepath"
OWNERS_DIR = "/var/lib/glidepath/owners"
A, B = "owners-a", "owners-b"
OWNER_A, OWNER_B = f"glidepath.e2e-{A}", f"glidepath.e2e-{B}"
VM_A, VIF_A, IP_A = "own-a", 4, "203.0.113.6"
VM_B, VIF_B, IP_B = "own-b", 5, "203.0.113.7"
#: What `new` holds before either stack: not glidepath's values, so that putting them
#: back shows. The lab's own values (glidepath's) come back after the module.
BEFORE_ON_NEW = {"net.ipv4.ip_forward": "0", "net.ipv4.conf.all.rp_filter": "1"}


def _out(lab: Any, host: str, *argv: str) -> str:
    return str(lab.run(host, list(argv), timeout=30).stdout)


def _file(lab: Any, host: str, path: str) -> str | None:
    done = lab.run(host, ["cat", "--", path], check=False, timeout=30)
    return str(done.stdout) if done.returncode == 0 else None


def _names(lab: Any, host: str, directory: str) -> list[str] | None:
    """The directory's entries (hidden ones too), or None when it does not exist."""
    done = lab.run(host, ["ls", "-A", "--", directory], check=False, timeout=30)
    return sorted(done.stdout.split()) if done.returncode == 0 else None


def _sysctls(lab: Any, host: str) -> dict[str, str]:
    return {key: _out(lab, host, "sysctl", "-n", key).strip() for key in FORWARDING_SYSCTLS}


def _holders(lab: Any, host: str) -> dict[str, list[str] | None]:
    return {key: _names(lab, host, f"{OWNERS_DIR}/sysctl.{key}") for key in FORWARDING_SYSCTLS}


def _kept(lab: Any, host: str) -> dict[str, str | None]:
    """The sysctl values from before glidepath that the first owner kept on the host."""
    return {
        key: _file(lab, host, f"{OWNERS_DIR}/sysctl.{key}.before-glidepath")
        for key in FORWARDING_SYSCTLS
    }


@pytest.fixture(scope="module")
def before(lab: Any) -> Iterator[dict[str, dict[str, str]]]:
    """The hosts as neither stack found them: the lab's own script, no owner of anything,
    and on `new` the values of BEFORE_ON_NEW. -> each host's sysctls then."""
    for host in HOSTS:
        leftovers = {
            "owners' route files": _names(lab, host, ROUTE_FILES),
            "saved script": _file(lab, host, SAVED),
            "sysctl owners": {k: v for k, v in _holders(lab, host).items() if v is not None},
        }
        assert not any(leftovers.values()), f"{host} holds another stack's artifacts: {leftovers}"
        # A script a crashed run left (no owner holds it) is not the lab's: the lab's back.
        path = t.host_path(host, SCRIPT)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(config.vif_route_script())
        path.chmod(0o755)
    lab_values = _sysctls(lab, "new")
    try:
        for key, value in BEFORE_ON_NEW.items():
            lab.run("new", ["sysctl", "-qw", f"{key}={value}"], timeout=30)
        yield {host: _sysctls(lab, host) for host in HOSTS}
    finally:
        for key, value in lab_values.items():
            lab.run("new", ["sysctl", "-qw", f"{key}={value}"], timeout=30)
        for host in HOSTS:
            baseline.ensure_vif_route_script(host)


@pytest.fixture(scope="module")
def stacks(
    before: dict[str, dict[str, str]],
    lab: Any,
    generated_stacks: Callable[[str, dict[str, dict[str, Any]]], GeneratedStack],
) -> tuple[GeneratedStack, GeneratedStack]:
    first = generated_stacks(A, {VM_A: lab_vm(VM_A, VIF_A, "old")})
    second = generated_stacks(B, {VM_B: lab_vm(VM_B, VIF_B, "old", network="net1")})
    net0 = second.config["glidepath:networks"]["net0"]
    second.set("networks", {"net1": {**net0, "mark": 2, "table": {"id": 202, "name": "vm-out-b"}}})
    second.set("links", [])
    return first, second


def _destroy(stack: GeneratedStack) -> str:
    """`pulumi destroy` of the stack (the stack itself stays for the fixture to remove);
    -> what it printed."""
    lines: list[str] = []

    def sink(line: str) -> None:
        lines.append(line)
        print(line)

    result = stack.stack.destroy(on_output=sink, color="never")
    assert result.summary.result == "succeeded"
    return "\n".join(lines)


def _remove_released(lab: Any, printed: str, vm: str, stack: GeneratedStack) -> None:
    """The destroy released the stack's VM (on_remove's default): it runs on; remove it by
    hand, as a user would, so that its tap and route go."""
    assert f"{vm}: released: still running and defined on old" in printed
    assert running_on(lab, vm) == ["old"]
    remove_vm_everywhere([vm], stack.disks())
    assert running_on(lab, vm) == []


def _routes_on(lab: Any, host: str, tap: str) -> list[str]:
    routes = json.loads(_out(lab, host, "ip", "-j", "route", "show", "dev", tap))
    return [str(route["dst"]) for route in routes]


def test_1_both_stacks_come_up_on_the_same_hosts(
    lab: Any, stacks: tuple[GeneratedStack, GeneratedStack]
) -> None:
    first, second = stacks
    assert first.up().summary.result == "succeeded"
    assert second.up().summary.result == "succeeded"
    for vm, ip in ((VM_A, IP_A), (VM_B, IP_B)):
        assert running_on(lab, vm) == ["old"]
        wait_answers(lab, ip)
    for host in HOSTS:
        assert _file(lab, host, SCRIPT) == vif_route_plans.render(SCRIPT)
        assert _names(lab, host, ROUTE_FILES) == [OWNER_A, OWNER_B]
        assert _file(lab, host, f"{ROUTE_FILES}/{OWNER_A}") == f"vif{VIF_A} {IP_A}\n"
        assert _file(lab, host, f"{ROUTE_FILES}/{OWNER_B}") == f"vif{VIF_B} {IP_B}\n"
        assert _file(lab, host, SAVED) == config.vif_route_script()  # kept by the first
        assert _sysctls(lab, host) == FORWARDING_SYSCTLS
        assert _holders(lab, host) == {key: [OWNER_A, OWNER_B] for key in FORWARDING_SYSCTLS}
    assert _kept(lab, "new")["net.ipv4.ip_forward"] == "0\n"


def test_2_destroying_the_second_leaves_what_the_first_holds(
    lab: Any, stacks: tuple[GeneratedStack, GeneratedStack]
) -> None:
    _, second = stacks
    printed = _destroy(second)
    assert f"{SCRIPT} left for {OWNER_A}" in printed
    assert f"net.ipv4.ip_forward left at 1 for {OWNER_A}" in printed
    _remove_released(lab, printed, VM_B, second)
    for host in HOSTS:
        assert _file(lab, host, SCRIPT) == vif_route_plans.render(SCRIPT), host
        assert _names(lab, host, ROUTE_FILES) == [OWNER_A], host
        assert _file(lab, host, f"{ROUTE_FILES}/{OWNER_A}") == f"vif{VIF_A} {IP_A}\n"
        assert _file(lab, host, SAVED) == config.vif_route_script(), host
        assert _sysctls(lab, host) == FORWARDING_SYSCTLS, host
        assert _holders(lab, host) == {key: [OWNER_A] for key in FORWARDING_SYSCTLS}, host


def test_3_the_first_stacks_vm_restarts_and_its_refresh_finds_nothing_changed(
    lab: Any, stacks: tuple[GeneratedStack, GeneratedStack]
) -> None:
    first, _ = stacks
    assert running_on(lab, VM_A) == ["old"]
    lab.run("old", ["virsh", "destroy", VM_A], timeout=60)
    # The failure: "cannot execute binary /etc/libvirt/scripts/vif-route".
    lab.run("old", ["virsh", "start", VM_A], timeout=60)
    assert running_on(lab, VM_A) == ["old"]
    assert IP_A in _routes_on(lab, "old", f"vif{VIF_A}")  # the script routed the new tap
    wait_answers(lab, IP_A)
    for host in HOSTS:
        assert _out(lab, host, "sysctl", "-n", "net.ipv4.ip_forward").strip() == "1", host
    first.refresh()
    assert first.changes() == [], first.changes()


def test_4_the_last_to_go_puts_back_what_the_lab_had(
    lab: Any,
    stacks: tuple[GeneratedStack, GeneratedStack],
    before: dict[str, dict[str, str]],
) -> None:
    first, _ = stacks
    _remove_released(lab, _destroy(first), VM_A, first)
    for host in HOSTS:
        assert _file(lab, host, SCRIPT) == config.vif_route_script(), host
        assert _out(lab, host, "stat", "-c", "%a", "--", SCRIPT).strip() == "755", host
        assert _names(lab, host, ROUTE_FILES) is None, host
        assert _file(lab, host, SAVED) is None, host
        assert _sysctls(lab, host) == before[host], host
        assert _holders(lab, host) == dict.fromkeys(FORWARDING_SYSCTLS), host
        assert _kept(lab, host) == dict.fromkeys(FORWARDING_SYSCTLS), host
    assert before["new"] != FORWARDING_SYSCTLS  # so the values above were put back
