"""End-to-end: the real CLI runs glidepath's own program on a copy of the lab stack.

The copy (`stacks/Pulumi.e2e.yaml`, git-ignored) lets tests change `host:` lines as a
user would without touching the committed lab stack. The stack handles live in
lab/stacks.py (the benchmarks use them too).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine import PROJECT_ROOT
from engine.workspace import project_stack
from lab import baseline, guest
from lab.stacks import (
    GeneratedStack,
    LabStack,
    lab_hosts,
    lab_vm,
    new_generated_stack,
    remove_generated_stack,
    remove_vm_everywhere,
)

CONSOLE_OFFSETS = pytest.StashKey[dict[Path, int]]()

__all__ = ["GeneratedStack", "LabStack", "host_network", "lab_hosts", "lab_vm"]

STACK = "e2e"
STACK_FILE = PROJECT_ROOT / "stacks" / f"Pulumi.{STACK}.yaml"
DISK = "/var/lib/libvirt/images/blog.img"


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
            # The destroy released `blog` (on_remove's default): it runs on until removed.
            remove_vm_everywhere(["blog"], [DISK])


@pytest.fixture(scope="module")
def generated_stacks(
    lab: Any,
) -> Iterator[Callable[[str, dict[str, dict[str, Any]]], GeneratedStack]]:
    """Factory: `make(name, vms)` -> a GeneratedStack `e2e-<name>` with the lab stack's
    hosts, link and network and these VMs instead of `blog`, starting from blank disks.
    Afterwards (even on failure): destroy, remove the stack and its file, remove the VMs
    and their disks from every host, and point core back at old."""
    made: list[GeneratedStack] = []

    def make(name: str, vms: dict[str, dict[str, Any]]) -> GeneratedStack:
        handle = new_generated_stack(f"e2e-{name}", vms)
        made.append(handle)
        return handle

    try:
        yield make
    finally:
        for handle in reversed(made):
            remove_generated_stack(handle)
        baseline.switch_core("old")


@pytest.fixture(autouse=True)
def guest_console_offsets(request: pytest.FixtureRequest) -> None:
    """Where the guests' console logs end as a lab test starts (for the report below)."""
    if "lab" in request.fixturenames:
        request.getfixturevalue("lab")  # up before its hosts are listed
        request.node.stash[CONSOLE_OFFSETS] = guest.console_offsets(lab_hosts())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    """A failed lab test's report also says what the guests' consoles printed meanwhile
    that shows a guest broke (lab.guest.TROUBLE), or that none did. A TCG guest can break
    in a move whoever moves it (lab/README.md, "Load, not glidepath, ..."): CI's output
    then tells that from glidepath's own failure."""
    outcome = yield
    report = outcome.get_result()
    offsets = item.stash.get(CONSOLE_OFFSETS, None)
    if report.when != "call" or not report.failed or offsets is None:
        return
    try:
        found = guest.trouble_since(offsets, lab_hosts())
    except Exception as error:  # a report must not fail on the lab being half down
        report.sections.append(("guest consoles", f"could not read them: {error}"))
        return
    text = (
        "\n".join(f"{log}:\n  " + "\n  ".join(lines[-20:]) for log, lines in found.items())
        or "no guest broke during this test (no oops, panic or new boot on any console)"
    )
    if found:
        text += "\n(a boot is a guest restarting, unless the test itself started that VM)"
    report.sections.append(("guest consoles", text))
