"""`lab-router`: the lab's `core` namespace plays the provider's router; the switch is
`ip route replace <prefix> via <host>` over the same SSH transport as everything else."""

from __future__ import annotations

import json

from providers.cutover import CutoverError
from providers.transport import SshSession


def current_gateway(ip_json: str) -> str | None:
    """`ip -j route show <prefix>` -> the gateway the prefix is routed to (None if unrouted)."""
    routes = json.loads(ip_json or "[]")
    for route in routes:
        if route.get("gateway"):
            return str(route["gateway"])
    return None


class LabRouter:
    kind = "lab-router"

    def __init__(self, router: SshSession, prefix: str) -> None:
        self.router = router
        self.prefix = prefix

    def current(self) -> str | None:
        result = self.router.run(["ip", "-j", "route", "show", self.prefix], check=False)
        if not result.ok:
            raise CutoverError(f"router {self.router.endpoint.name}: {result.stderr.strip()}")
        return current_gateway(result.stdout)

    def switch(self, address: str) -> None:
        self.router.run(["ip", "route", "replace", self.prefix, "via", address])

    def nudge(self, addresses: list[str]) -> None:
        # One ping from the router, not waited for: the cutover watches for its arrival.
        for address in addresses[:1]:
            self.router.start(["ping", "-n", "-q", "-c", "1", "-W", "1", address]).close()

    def unreachable(self, addresses: list[str]) -> list[str]:
        silent = []
        for address in addresses:
            # Bounded: 3 tries of 1 s each per VM.
            ping = ["ping", "-n", "-q", "-c", "1", "-W", "1", address]
            if not any(self.router.run(ping, check=False).ok for _ in range(3)):
                silent.append(address)
        return silent
