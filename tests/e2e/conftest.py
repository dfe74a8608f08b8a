"""End-to-end: the real CLI runs glidepath's own program on a copy of the lab stack.

The copy (`stacks/Pulumi.e2e.yaml`, git-ignored) lets tests change `host:` lines as a
user would without touching the committed lab stack.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from pulumi import automation as auto

from engine import PROJECT_ROOT
from engine.workspace import project_stack

STACK = "e2e"
STACK_FILE = PROJECT_ROOT / "stacks" / f"Pulumi.{STACK}.yaml"
DISK = "/var/lib/libvirt/images/blog.img"


class LabStack:
    """The e2e stack with the operations a user does, and their captured output."""

    def __init__(self, stack: auto.Stack) -> None:
        self.stack = stack
        self.output: list[str] = []
        self.steps: list[tuple[str, str, str]] = []  # (op, type, urn) of the last run
        self.refreshing = False
        self.before_first_up: dict[str, dict[str, str]] = {}

    def _event(self, event: auto.EngineEvent) -> None:
        pre, outputs = event.resource_pre_event, event.res_outputs_event
        # A refresh announces every resource as "refresh"; what it found (same, update
        # for drift, delete for gone) comes with the outputs event.
        if pre is not None and pre.metadata.op.value != "refresh":
            self.steps.append((str(pre.metadata.op.value), pre.metadata.type, pre.metadata.urn))
        elif outputs is not None and self.refreshing:
            meta = outputs.metadata
            self.steps.append((str(meta.op.value), meta.type, meta.urn))

    def changes(self) -> list[tuple[str, str, str]]:
        """The last run's steps that change something. The self StackReference
        (components/previous.py) is re-read on every run and is no change of ours."""
        return [
            step
            for step in self.steps
            if step[0] not in ("same", "read") and step[1] != "pulumi:pulumi:StackReference"
        ]

    def _sink(self, line: str) -> None:
        self.output.append(line)
        print(line)

    def set_vm_host(self, vm: str, host: str) -> None:
        self.stack.set_config(f"glidepath:vms.{vm}.host", auto.ConfigValue(host), path=True)

    def up(self) -> auto.UpResult:
        self.output, self.steps = [], []
        return self.stack.up(on_output=self._sink, on_event=self._event, color="never")

    def preview(self) -> auto.PreviewResult:
        self.output, self.steps = [], []
        # With --diff the CLI writes the providers' messages (the move's plan) to stderr.
        return self.stack.preview(
            diff=True,
            on_output=self._sink,
            on_error=self._sink,
            on_event=self._event,
            color="never",
        )

    def refresh(self) -> auto.RefreshResult:
        self.output, self.steps, self.refreshing = [], [], True
        try:
            return self.stack.refresh(on_output=self._sink, on_event=self._event, color="never")
        finally:
            self.refreshing = False

    def outputs(self) -> dict[str, Any]:
        return {key: value.value for key, value in self.stack.outputs().items()}


def _text(lab: Any, host: str, *argv: str) -> str:
    return str(lab.run(host, list(argv), timeout=30).stdout)


def host_network(lab: Any, host: str) -> dict[str, str]:
    """What glidepath may touch on a host, as text to compare before and after."""
    return {
        "rules": _text(lab, host, "ip", "-4", "rule", "show"),
        "routes": _text(lab, host, "ip", "-4", "route", "show", "table", "all"),
        "mangle": "\n".join(
            line
            for line in _text(lab, host, "iptables-save", "-t", "mangle").splitlines()
            if not line.startswith("#")
        ),
        "rt_tables": _text(lab, host, "cat", "/etc/iproute2/rt_tables"),
        "sysctls": _text(lab, host, "sysctl", "net.ipv4.ip_forward", "net.ipv4.conf.all.rp_filter"),
        "tunnels": _text(lab, host, "ip", "-o", "link", "show", "type", "tun"),
    }


@pytest.fixture(scope="module")
def lab_stack(lab: Any) -> Iterator[LabStack]:
    # Disks are kept when a VM is deleted: start from blank ones so the guest's write
    # sequence on disk is this run's alone.
    for host in ("old", "new"):
        lab.run(host, ["rm", "-f", "--", DISK], timeout=30)
    shutil.copyfile(PROJECT_ROOT / "stacks" / "Pulumi.lab.yaml", STACK_FILE)
    stack = project_stack(STACK)
    handle = LabStack(stack)
    handle.before_first_up = {host: host_network(lab, host) for host in ("old", "new")}
    try:
        yield handle
    finally:
        try:
            stack.destroy(on_output=print, color="never")
        finally:
            stack.workspace.remove_stack(STACK, force=True)
            STACK_FILE.unlink(missing_ok=True)
            for host in ("old", "new"):
                lab.run(host, ["rm", "-f", "--", DISK], timeout=30)
