"""A lifecycle that never surprises (issue 16, point 3), end to end on the lab.

One stack, `e2e-lifecycle`, with three VMs on old, each taken out of the stack in turn:

1. `rel` (the defaults): released. The `up` says so; the VM runs on, defined, in the same
   QEMU process, and still answers (old is the upstream: its /32 stays on its tap).
2. `down` (`on_remove: shutdown`): the guest's acpid powers it off at the ACPI request;
   the `up` succeeds, the domain is undefined and its disk kept. `stubborn` (the same,
   `shutdown_timeout_s: 10`, a guest that ignores the power button: `gp.noacpid`): the
   `up` fails after the timeout naming the VM, the host and the timeout, and the VM runs
   on in the same QEMU process, defined: no hard stop. Put back in the stack with
   `on_remove: release`, its next removal releases it.
3. `prot` (`protect: true`): preview and `up` fail with pulumi's protect error and the VM
   runs on; `pulumi state unprotect`, as the error says, and the next `up` releases it.

And, on a stack of its own (an inline program), 4.: a VmPlacement moved to a new parent
component with an alias is not touched (no create, delete or replace; same domain id and
QEMU process), where the same move without the alias would be a create and a delete.

A released VM is no longer the stack's: each test removes its own by hand at the end.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from pulumi import automation as auto

from components.config import parse_config
from engine import PROJECT_ROOT, engine_env
from engine.workspace import inline_stack
from lab.stacks import LAB_STACK_FILE, remove_vm_everywhere
from providers.vm_placement import VmPlacement
from tests.e2e.conftest import GeneratedStack, LabStack, lab_vm
from tests.e2e.test_preflight import running_on, wait_answers

pytestmark = [pytest.mark.e2e, pytest.mark.lab, pytest.mark.engine]

REL, DOWN, STUBBORN, PROT, ALIAS = "rel", "down", "stubborn", "prot", "alias"
TIMEOUT_S = 10


def _ignoring_the_power_button(vm: dict[str, Any]) -> dict[str, Any]:
    return {**vm, "boot": {**vm["boot"], "cmdline": vm["boot"]["cmdline"] + " gp.noacpid=1"}}


VMS = {
    REL: lab_vm(REL, 1, "old"),
    DOWN: lab_vm(DOWN, 2, "old", on_remove="shutdown", shutdown_timeout_s=60),
    STUBBORN: _ignoring_the_power_button(
        lab_vm(STUBBORN, 4, "old", on_remove="shutdown", shutdown_timeout_s=TIMEOUT_S)
    ),
    PROT: lab_vm(PROT, 3, "old", protect=True),
}


def _out(lab: Any, host: str, *argv: str) -> str:
    return str(lab.run(host, list(argv), timeout=30).stdout).strip()


def _domain(lab: Any, host: str, vm: str) -> dict[str, str]:
    """The domain as a restart or a re-creation would change it: its id and its QEMU
    process (its UUID derives from its name, the same for any definition)."""
    return {
        "uuid": _out(lab, host, "virsh", "domuuid", vm),
        "id": _out(lab, host, "virsh", "domid", vm),
        "qemu_pid": _out(lab, host, "cat", "--", f"/run/libvirt/qemu/{vm}.pid"),
    }


def _defined(lab: Any, host: str, vm: str) -> bool:
    return vm in _out(lab, host, "virsh", "list", "--all", "--persistent", "--name").split()


def _disks(vm: str) -> list[str]:
    return [disk["path"] for disk in lab_vm(vm, 0, "old")["disks"]]


def _without(stack: GeneratedStack, vm: str) -> dict[str, Any]:
    """Take `vm` out of the stack file, as a user deletes its entry; -> the entry."""
    vms = stack.vms()
    entry = vms.pop(vm)
    stack.set("vms", vms)
    return dict(entry)


def _placement_ops(stack: LabStack, vm: str) -> list[str]:
    """What the last run did to `vm`'s placement (whatever its URN)."""
    return [
        op
        for op, kind, urn in stack.steps
        if kind.endswith(":VmPlacement") and urn.endswith(f"::{vm}")
    ]


def _urns(stack: LabStack, vm: str) -> list[str]:
    """The URNs of `vm`'s placement in the stack's state."""
    deployment = stack.stack.export_stack().deployment or {}
    return [
        str(res["urn"])
        for res in deployment.get("resources", [])
        if str(res.get("type", "")).endswith(":VmPlacement")
        and str(res.get("urn", "")).endswith(f"::{vm}")
    ]


def _unprotect(stack: GeneratedStack, urn: str) -> None:
    """What pulumi's protect error says to run, with the CLI, as a user would."""
    done = subprocess.run(
        [
            "pulumi",
            "--non-interactive",
            "state",
            "unprotect",
            "--yes",
            "--stack",
            stack.stack.name,
            urn,
        ],
        cwd=PROJECT_ROOT,
        env=engine_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def stack(
    lab: Any, generated_stacks: Callable[[str, dict[str, dict[str, Any]]], GeneratedStack]
) -> GeneratedStack:
    handle = generated_stacks("lifecycle", VMS)
    assert handle.up().summary.result == "succeeded"
    for vm in VMS:
        assert running_on(lab, vm) == ["old"], vm
    return handle


def test_1_a_vm_taken_out_of_the_stack_is_released_and_runs_on(
    lab: Any, stack: GeneratedStack
) -> None:
    wait_answers(lab, VMS[REL]["ip"])
    before = _domain(lab, "old", REL)
    _without(stack, REL)
    try:
        assert stack.up().summary.result == "succeeded"
        printed = "\n".join(stack.output)
        assert (
            f"{REL}: released: still running and defined on old; glidepath no longer manages it"
        ) in printed
        assert _placement_ops(stack, REL) == ["delete"]  # gone from the state only
        assert running_on(lab, REL) == ["old"]
        assert _defined(lab, "old", REL)
        assert _domain(lab, "old", REL) == before  # the same QEMU process: never restarted
        wait_answers(lab, VMS[REL]["ip"], boot_s=5)
        for vm in (DOWN, STUBBORN, PROT):  # the others are not touched either
            assert running_on(lab, vm) == ["old"], vm
    finally:
        remove_vm_everywhere([REL], _disks(REL))


def test_2a_shutdown_stops_the_guest_gracefully(lab: Any, stack: GeneratedStack) -> None:
    wait_answers(lab, VMS[DOWN]["ip"])
    _without(stack, DOWN)
    try:
        assert stack.up().summary.result == "succeeded"
        assert _placement_ops(stack, DOWN) == ["delete"]
        assert running_on(lab, DOWN) == []
        assert not _defined(lab, "old", DOWN)
        console = _out(
            lab, "old", "tail", "-c", "2000", f"/var/log/libvirt/qemu/{DOWN}-console.log"
        )
        assert "GP-POWEROFF" in console, console  # the guest's own power-off, not a kill
        for disk in _disks(DOWN):  # kept: delete_disks is not set
            assert _out(lab, "old", "stat", "-c", "%s", disk)
        for vm in (STUBBORN, PROT):
            assert running_on(lab, vm) == ["old"], vm
    finally:
        remove_vm_everywhere([DOWN], _disks(DOWN))


def test_2b_shutdown_asks_the_guest_and_never_forces_it(lab: Any, stack: GeneratedStack) -> None:
    before = _domain(lab, "old", STUBBORN)
    entry = _without(stack, STUBBORN)
    try:
        started = time.monotonic()
        with pytest.raises(auto.CommandError) as raised:
            stack.up()
        elapsed = time.monotonic() - started
        text = str(raised.value) + "\n".join(stack.output)
        assert (
            f"{STUBBORN}: did not stop within shutdown_timeout_s={TIMEOUT_S} s of the ACPI "
            "shutdown request on old: it still runs there, defined; nothing was forced"
        ) in text, text[-3000:]
        assert elapsed >= TIMEOUT_S
        assert running_on(lab, STUBBORN) == ["old"]
        assert _defined(lab, "old", STUBBORN)
        assert _domain(lab, "old", STUBBORN) == before  # no hard stop, no restart
        # Still in the state: the next preview plans the removal again.
        stack.preview()
        assert _placement_ops(stack, STUBBORN) == ["delete"]

        # Keep it after all: back in the stack, released at its next removal.
        vms = stack.vms()
        vms[STUBBORN] = {**entry, "on_remove": "release"}
        stack.set("vms", vms)
        assert stack.up().summary.result == "succeeded"
        assert _placement_ops(stack, STUBBORN) == ["update"]
        assert f"{STUBBORN}: removing it from the stack releases it" in "\n".join(stack.output)
        _without(stack, STUBBORN)
        assert stack.up().summary.result == "succeeded"
        assert f"{STUBBORN}: released: still running and defined on old" in "\n".join(stack.output)
        assert running_on(lab, STUBBORN) == ["old"]
        assert _domain(lab, "old", STUBBORN) == before
    finally:
        remove_vm_everywhere([STUBBORN], _disks(STUBBORN))


def test_3_a_protected_vm_cannot_be_removed_until_unprotected(
    lab: Any, stack: GeneratedStack
) -> None:
    before = _domain(lab, "old", PROT)
    [urn] = _urns(stack, PROT)
    _without(stack, PROT)
    try:
        for run in (stack.preview, stack.up):
            with pytest.raises(auto.CommandError) as raised:
                run()
            text = str(raised.value) + "\n".join(stack.output)
            assert "cannot be deleted" in text, text[-3000:]
            assert "because it is protected" in text
            assert "pulumi state unprotect" in text
            assert f"{PROT}: released" not in text  # the provider was never asked
            assert running_on(lab, PROT) == ["old"]
            assert _domain(lab, "old", PROT) == before

        _unprotect(stack, urn)
        assert stack.up().summary.result == "succeeded"
        assert f"{PROT}: released: still running and defined on old" in "\n".join(stack.output)
        assert running_on(lab, PROT) == ["old"]
        assert _domain(lab, "old", PROT) == before
    finally:
        remove_vm_everywhere([PROT], _disks(PROT))


class Group(pulumi.ComponentResource):
    """A parent component, as a refactor introduces one."""

    def __init__(self, type_: str, name: str) -> None:
        super().__init__(type_, name, {}, None)
        self.register_outputs({})


def test_4_a_placement_moved_to_a_new_parent_with_an_alias_is_not_touched(
    lab: Any, tmp_path: Path
) -> None:
    raw = yaml.safe_load(LAB_STACK_FILE.read_text())["config"]
    raw["glidepath:vms"] = {ALIAS: lab_vm(ALIAS, 0, "old")}
    config = parse_config({key.split(":", 1)[1]: value for key, value in raw.items()})
    vm = config.vms[ALIAS]
    # What the program declares: the parent's type, and the aliases of the placement.
    layout: dict[str, Any] = {"parent": "glidepath:test:Before", "aliases": []}

    def program() -> None:
        parent = Group(layout["parent"], "group")
        VmPlacement(
            ALIAS,
            name=ALIAS,
            host=config.hosts[vm.host].endpoint(),
            fleet={name: host.endpoint() for name, host in config.hosts.items()},
            ip=vm.ip,
            vif=vm.vif,
            memory_mib=vm.memory_mib,
            disks=vm.disks,
            boot=vm.boot,
            domain_type=vm.domain_type,
            migration=vm.migration,
            opts=pulumi.ResourceOptions(parent=parent, aliases=layout["aliases"]),
        )
        pulumi.export("parent", parent.urn)

    remove_vm_everywhere([ALIAS], _disks(ALIAS))
    handle = LabStack(
        inline_stack(f"e2e-lifecycle-alias-{os.getpid()}", "glidepath", program, tmp_path)
    )
    try:
        for key, value in raw["glidepath:ssh"].items():
            handle.stack.set_config(f"glidepath:ssh.{key}", auto.ConfigValue(str(value)), path=True)
        assert handle.up().summary.result == "succeeded"
        assert running_on(lab, ALIAS) == ["old"]
        before = _domain(lab, "old", ALIAS)
        first_parent = str(handle.outputs()["parent"])

        # The control: the same move without an alias is a new resource and a deleted one
        # (previewed only: nothing runs).
        layout["parent"] = "glidepath:test:Elsewhere"
        handle.preview()
        assert sorted(_placement_ops(handle, ALIAS)) == ["create", "delete"]

        # The refactor: a new parent, and an alias naming the old one.
        layout.update(parent="glidepath:test:After", aliases=[pulumi.Alias(parent=first_parent)])
        for run in (handle.preview, handle.up):
            run()
            assert set(_placement_ops(handle, ALIAS)) <= {"same"}, handle.steps
            # Only the parents change: the old one goes, the new one comes.
            changed = {kind for _, kind, _ in handle.changes()} - {"pulumi:pulumi:Stack"}
            assert changed == {"glidepath:test:Before", "glidepath:test:After"}, handle.steps
        [urn] = _urns(handle, ALIAS)  # the same state, under its new parent
        assert "glidepath:test:After$" in urn, urn
        assert running_on(lab, ALIAS) == ["old"]
        assert _domain(lab, "old", ALIAS) == before
        handle.preview()
        assert handle.changes() == []
    finally:
        try:
            handle.stack.destroy(on_output=print, color="never")  # releases it
        finally:
            handle.stack.workspace.remove_stack(handle.stack.name, force=True)
            remove_vm_everywhere([ALIAS], _disks(ALIAS))
