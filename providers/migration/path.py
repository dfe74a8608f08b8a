"""Which path a move's memory and disk streams take between the hosts.

libvirt's default is the target's own address: QEMU's migration stream and the NBD disk
copy then cross the public network in clear. glidepath sends both through the hosts'
`ssh -w` tunnel instead, as the blog did ("This way we have encryption"): the target's
QEMU listens on its tunnel address only, and the source connects to that address, so
both streams ride inside SSH. libvirt's own TLS would need a CA and a certificate per
host to manage and rotate; the tunnel is already there for the egress, and SSH is
already trusted with pinned host keys.

`transport: direct` (per VM) keeps libvirt's default, for hosts on a private network
the operator trusts; then nothing is encrypted and the preview says so.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from providers.transport import SshSession


@dataclass(frozen=True)
class Path:
    """Where the target listens for a move: None for libvirt's default (in clear)."""

    address: str | None

    def describe(self, source: str, target: str) -> str:
        if self.address is None:
            return f"memory and disks cross {source} -> {target} in clear (transport: direct)"
        return f"memory and disks through the {source}-{target} tunnel ({self.address})"


class NoTunnel(ValueError):
    """A move asks for the tunnel and the stack has no link between its hosts."""


def choose(
    transport: str, tunnel_addresses: Mapping[str, Mapping[str, str]], source: str, target: str
) -> Path:
    """The path of a move `source` -> `target`. `tunnel_addresses[host][peer]` is host's
    address on its link with peer (an interface address, a.b.c.d/n)."""
    if transport == "direct":
        return Path(None)
    address = tunnel_addresses.get(target, {}).get(source)
    if address is None:
        raise NoTunnel(
            f"no link between {source} and {target} in glidepath:links: the move's memory "
            "and disks would cross the network in clear. Add a link between them, or set "
            "migration.transport: direct for hosts on a network you trust"
        )
    return Path(str(ipaddress.ip_interface(address).ip))


def uri(address: str) -> str:
    """A libvirt migration URI for QEMU's tcp transport at `address`."""
    host = f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
    return f"tcp://{host}"


def check(
    path: Path, source: SshSession, target: SshSession, source_name: str, target_name: str
) -> list[str]:
    """Read-only: the target holds the tunnel address, and the source reaches it through a
    tunnel device (not its uplink). -> problems, empty when the path is right."""
    if path.address is None:
        return []
    problems: list[str] = []
    addresses = json.loads(target.run(["ip", "-j", "-4", "addr", "show"]).stdout or "[]")
    if not holds(addresses, path.address):
        problems.append(
            f"{target_name} has no tunnel address {path.address}: the link is down "
            "(`pulumi refresh` shows its tunnel)"
        )
        return problems
    route = json.loads(source.run(["ip", "-j", "-4", "route", "get", path.address]).stdout or "[]")
    device = route_device(route)
    if not device.startswith("tun"):
        problems.append(
            f"{source_name} reaches {path.address} through {device or 'no device'}, not the "
            "tunnel: the move would cross the network in clear"
        )
    return problems


def holds(addresses: list[dict[str, Any]], address: str) -> bool:
    """Whether `ip -j addr show` lists `address` on an interface that is up."""
    for link in addresses:
        if "UP" not in link.get("flags", []):
            continue
        if any(info.get("local") == address for info in link.get("addr_info", [])):
            return True
    return False


def route_device(route: list[dict[str, Any]]) -> str:
    """The device of `ip -j route get`'s answer ("" if none)."""
    return str(route[0].get("dev", "")) if route else ""
