"""Cutover backends: who tells the provider's network where to route a prefix.

Each backend answers where the prefix goes now (`current`) and moves it (`switch`).
`lab-router` does it over SSH on the lab's `core`, exactly as a provider's API would;
`manual` switches nothing and leaves the move to a person (glidepath then only waits for
the first packet); `hetzner-robot` calls the Robot web service's failover switch.
"""

from __future__ import annotations

from typing import Any, Protocol


class CutoverError(RuntimeError):
    """The switch failed or its state could not be read; the message says what happened."""


class SwitchPending(CutoverError):
    """The switch call gave no answer in time, and the provider may still be switching:
    the first direct packet will tell."""


class Backend(Protocol):
    kind: str

    def current(self) -> str | None:
        """The address the prefix is routed to now, or None where the backend cannot tell."""

    def switch(self, address: str) -> None:
        """Route the prefix to `address`."""

    def nudge(self, addresses: list[str]) -> None:
        """Send a packet toward the VMs through the provider's network, where the backend
        can, so a quiet network still shows its first direct packet (no-op otherwise)."""

    def unreachable(self, addresses: list[str]) -> list[str]:
        """Which VM addresses do not answer through the provider's network (if it can tell)."""


def backend_for(cutover: dict[str, Any], prefix: str, provider: Any) -> Backend:
    kind = cutover.get("kind")
    if kind == "lab-router":
        from providers.cutover.lab_router import LabRouter

        return LabRouter(provider.session({"host": cutover["router"]}), prefix)
    if kind == "manual":
        from providers.cutover.manual import Manual

        return Manual(prefix)
    if kind == "hetzner-robot":
        from providers.cutover.hetzner_robot import HetznerRobot

        return HetznerRobot(cutover, prefix, provider.robot_credentials())
    raise CutoverError(f"unknown cutover kind {kind!r}")
