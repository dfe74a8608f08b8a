"""Route handover of a migrating VM, pure: where its /32 points, and when it moves.

libvirt creates the target's tap when the incoming QEMU starts, seconds before the VM
runs there, and the source's tap goes only after the target resumed. The vif-route
script would route the address to the new tap at once, and the source's route stays
until its tap goes: a host that routes both ways (the upstream) sent inbound traffic
into a tap nobody read for the whole copy (a move back to the upstream: 613 ms gap), or
into the paused source until libvirt tore it down (a move away: ~30 ms more than QEMU's
downtime). So the target holds its route (a hold file the script obeys) and glidepath
moves the route when the source pauses: packets sent during the downtime wait in the
target's tap and reach the VM as it resumes.
"""

from __future__ import annotations

import ipaddress
import posixpath

from providers.plans import PlanError
from providers.plans.vif_route_script import HOLD_DIR, VIF_NAME

#: A hold outlives the move's timeout by this much; a hold left by a killed `up` then
#: expires instead of keeping a later VM on that vif unrouted.
HOLD_MARGIN_S = 120


def _vif(vif: str) -> str:
    if not VIF_NAME.fullmatch(vif):
        raise PlanError(f"{vif!r} is not a plain interface name")
    return vif


def hold_path(vif: str) -> str:
    return posixpath.join(HOLD_DIR, _vif(vif))


def hold_until(host_now_s: int, timeout_s: float) -> str:
    """The hold file's content: the host's epoch second when the hold lapses."""
    return f"{host_now_s + int(timeout_s) + HOLD_MARGIN_S}\n"


def make_hold_dir() -> list[str]:
    return ["install", "-d", "-m", "0700", "--", HOLD_DIR]


def release(vif: str) -> list[str]:
    return ["rm", "-f", "--", hold_path(vif)]


def _host_route(ip: str) -> str:
    try:
        address = ipaddress.IPv4Address(ip)
    except ValueError as err:
        raise PlanError(f"{ip!r} is not an IPv4 address") from err
    return f"{address}/32"


def route_here(ip: str, vif: str) -> list[str]:
    """On the target at the source's pause (and on the source after a failed move)."""
    return ["ip", "route", "replace", _host_route(ip), "dev", _vif(vif)]


def route_away(ip: str, vif: str) -> list[str]:
    """On the source at its pause: its tunnel route (a higher metric) takes over. Fails
    harmlessly when the route is already gone with the tap."""
    return ["ip", "route", "del", _host_route(ip), "dev", _vif(vif)]
