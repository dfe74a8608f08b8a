"""A VM leaving the stack (VmPlacement's delete), as its `on_remove` says.

- `release` (the default): nothing changes on the host. The domain runs on (or stays
  stopped), defined, on its disks; glidepath only stops managing it.
- `shutdown`: the ACPI power button, pressed again every RETRY_S, until the domain stops or
  `shutdown_timeout_s` runs out; then it is undefined (its disks removed where
  `delete_disks`). A guest that does not stop in time fails the delete and is left running
  and defined: never a hard power-off (`virDomainDestroy`), which would cut its writes short.

The loop takes a clock and a sleep, so tests drive it with a fake domain and a fake clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

POLL_S = 0.5
#: A guest still booting, or one that missed the event, ignores a single press: press again
#: (nova's clean shutdown does the same, every 10 s).
RETRY_S = 10.0

Clock = Callable[[], float]
Sleep = Callable[[float], object]


class ShutdownError(RuntimeError):
    """The VM did not stop: it still runs, defined, and nothing was forced."""


def describe(props: dict[str, Any]) -> str:
    """What removing the VM will do, from its canonical inputs."""
    if props["on_remove"] != "shutdown":
        return "removing it from the stack releases it: it keeps running, defined"
    disks = "its disks removed" if props["delete_disks"] else "its disks kept"
    return (
        f"removing it from the stack shuts it down (ACPI, up to {props['shutdown_timeout_s']} "
        f"s) and undefines it, {disks}"
    )


def released(name: str, host: str, running: bool, delete_disks: bool) -> str:
    """The line a release prints."""
    state = "still running and defined" if running else "still defined (not running)"
    line = f"{name}: released: {state} on {host}; glidepath no longer manages it"
    if delete_disks:
        # A state from before delete_disks needed on_remove: shutdown; the disks stay.
        line += " (its disks are kept: delete_disks needs on_remove: shutdown)"
    return line


def shut_down(
    dom: Any,
    name: str,
    host: str,
    timeout_s: int,
    *,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
) -> float:
    """Stop a running domain the way its guest would stop itself. -> seconds it took.

    Raises ShutdownError when the guest cannot or does not stop within `timeout_s`."""
    import libvirt

    if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
        # A paused guest's vCPUs do not run: it cannot answer the power button.
        raise ShutdownError(
            f"{name}: paused on {host}, so it cannot answer an ACPI shutdown request; still "
            f"defined there, nothing forced. Resume it (virsh resume {name}) or stop it "
            "yourself, then `pulumi up` again"
        )
    started = clock()
    _press(dom, name, host)
    pressed = started
    while dom.isActive():
        now = clock()
        if now - started >= timeout_s:
            raise ShutdownError(
                f"{name}: did not stop within shutdown_timeout_s={timeout_s} s of the ACPI "
                f"shutdown request on {host}: it still runs there, defined; nothing was "
                f"forced. Stop the guest yourself (`virsh destroy {name}` on {host} powers "
                "it off) and `pulumi up` again, or keep it: docs/moving.md, 'Removing a VM'"
            )
        if now - pressed >= RETRY_S:
            _press(dom, name, host)
            pressed = now
        sleep(POLL_S)
    return clock() - started


def _press(dom: Any, name: str, host: str) -> None:
    import libvirt

    try:
        # ACPI_POWER_BTN: the request every guest OS understands; glidepath's domains have
        # no guest agent channel for the other kind.
        dom.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
    except libvirt.libvirtError as err:
        if not dom.isActive():
            return  # it stopped in the meantime
        raise ShutdownError(
            f"{name}: the ACPI shutdown request failed on {host}: {err}; still running and "
            "defined there, nothing forced"
        ) from err


def undefine(dom: Any) -> None:
    """Remove the stopped domain's definition (already transient or gone: nothing to do)."""
    import libvirt

    try:
        dom.undefine()
    except libvirt.libvirtError:
        if dom.isPersistent():
            raise
