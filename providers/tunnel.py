"""Tunnel: the blog's `ssh -w N:N` link between two hosts, addressed and kept alive.

`host` runs ssh; `peer` is the other end. Identity is (host, peer, tun): a change of any
of them is a new link (replace); an address change is an update (the keeper is restarted
with the new parameters, so the link drops for a moment).

Both ends' tunN are persistent devices that glidepath creates and marks as its own (an
alias naming the link): ssh and the peer's sshd attach to them, so when ssh dies their
addresses and the routes through them stay (without carrier) until ssh is back, instead
of vanishing with a device that ssh made. Deleting the tunnel removes them.

Kept alive without systemd: glidepath installs a fixed supervisor script on `host`
(`/usr/local/lib/glidepath/tunnel-keeper`, see `providers.plans.tunnel`) and starts it
detached (`setsid -f`) with its parameters as argv. It runs `ssh -w N:N` to the peer,
addresses its end of tunN, and restarts ssh with a short back-off whenever it exits.
The keeper is found by PID only (pid file + /proc/<pid>/cmdline), never by name.

What the operator provides on real hosts (the lab sets both up per host):
- on `host`, root's ssh client config and known_hosts already trust the peer: the
  keeper runs ssh with BatchMode and StrictHostKeyChecking=yes, so an unknown or changed
  peer key fails (see the keeper's log under /var/log/glidepath/) instead of prompting;
- on `peer`, sshd allows root by key with `PermitTunnel yes` (or `point-to-point`); a
  `ClientAliveInterval` there frees the peer's tunN soon after a cut link.
On a systemd host the keeper survives our SSH session unless logind's KillUserProcesses is
set; a unit would be the native alternative.

Outputs: the inputs, plus `state` ("up"/"down": `pulumi refresh` shows a tunnel that is
down as drift, and the next `up` repairs it), `keeper_pid`, and `actual`: each end's
address and link state as read ({"host": {"address": ..., "up": ...}, "peer": {...}}).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import pulumi
from pulumi.dynamic import Resource

from providers.base import HostProvider, apply
from providers.boot import host as boot
from providers.boot import persist
from providers.facts import tunnel as facts
from providers.plans import tunnel as plans
from providers.schema.tunnel import TunnelArgs
from providers.transport import SshSession

#: How long create/update wait for both ends to come up (the keeper retries meanwhile).
UP_TIMEOUT_S = 15.0
#: How long a started keeper may take to write its pid file (it takes its lock first).
KEEPER_START_TIMEOUT_S = 5.0
#: How long a stopped keeper gets to exit after TERM before KILL, and after KILL.
STOP_TIMEOUT_S = 5.0
#: How long the peer's sshd may take to let go of its tunN after our ssh is gone.
DEVICE_GONE_TIMEOUT_S = 10.0
POLL_S = 0.25


def _tunnel(props: dict[str, Any]) -> plans.Tunnel:
    peer = props["peer"]
    return {
        "tun": int(props["tun"]),
        "user": str(peer["user"]),
        "peer": str(peer["address"]),
        "port": int(peer["port"]),
        "address": str(props["address"]),
        "peer_address": str(props["peer_address"]),
    }


def _records(tunnel: plans.Tunnel, alias: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """The boot records of a link: {"host": the host's device, "keeper": its keeper,
    "peer": the peer's device} -> (name, fields)."""
    dev = plans.device(tunnel["tun"])

    def device(address: str) -> tuple[str, dict[str, Any]]:
        fields = {"dev": dev, "address": address, "alias": alias, "mtu": plans.TUNNEL_MTU}
        return persist.record_name("tundev", dev), fields

    keeper = persist.record_name("keeper", plans.record_base(tunnel))
    return {
        "host": device(tunnel["address"]),
        "keeper": (keeper, {"args": list(plans.keeper_args(tunnel))}),
        "peer": device(tunnel["peer_address"]),
    }


def _end(desired: str, device: facts.Device | None) -> dict[str, Any]:
    """One end as refresh shows it: {"address": "198.18.105.2/24" or None, "up": bool}."""
    return {
        "address": plans.actual_address(desired, device),
        "up": device is not None and device["up"],
    }


class _Facts:
    """Everything one decision needs, read afresh each time."""

    def __init__(self, host: SshSession, peer: SshSession, tunnel: plans.Tunnel) -> None:
        dev = plans.device(tunnel["tun"])
        self.alias = plans.owner_alias(host.endpoint.address, peer.endpoint.address)
        pid = facts.process_pid(host.read_file(plans.pid_file(tunnel)))
        self.keeper: facts.Keeper = {"pid": None, "cmdline": None, "members": []}
        if pid is not None:
            self.keeper = {
                "pid": pid,
                "cmdline": facts.process_cmdline(host.run(facts.cmdline_command(pid), check=False)),
                "members": facts.process_members(host.run(facts.members_command(pid), check=False)),
            }
        self.host_device = facts.process_device(host.run(facts.device_command(dev), check=False))
        self.peer_device = facts.process_device(peer.run(facts.device_command(dev), check=False))
        self.tunnel = tunnel

    @property
    def state(self) -> str:
        return plans.tunnel_state(
            self.tunnel, self.keeper, self.host_device, self.peer_device, self.alias
        )

    @property
    def foreign_device(self) -> bool:
        """A tunN on either end that is not our persistent one (ssh made it, or someone
        else did)."""
        return any(
            d is not None and not plans.is_ours(self.alias, d)
            for d in (self.host_device, self.peer_device)
        )

    def describe(self, host: str, peer: str) -> str:
        """What is missing, in words, for an error message."""
        tunnel, dev = self.tunnel, plans.device(self.tunnel["tun"])
        status = plans.keeper_status(tunnel, self.keeper)
        parts = [
            f"keeper {status}" + (f" (pid {self.keeper['pid']})" if self.keeper["pid"] else "")
        ]
        for name, address, device in (
            (host, tunnel["address"], self.host_device),
            (peer, tunnel["peer_address"], self.peer_device),
        ):
            if device is None:
                parts.append(f"{name}: no {dev}")
            elif not plans.is_ours(self.alias, device):
                parts.append(f"{name}: {dev} is not glidepath's persistent device")
            elif not plans.end_is_up(address, device):
                parts.append(
                    f"{name}: {dev} {'up' if device['up'] else 'down'} with "
                    f"{device['addresses'] or 'no address'}, wants {address}"
                )
        return "; ".join(parts)


class TunnelProvider(HostProvider):
    identity = ("host", "peer", "tun")
    schema = TunnelArgs

    def diffed_fields(self, news: dict[str, Any]) -> list[str]:
        return ["host", "peer", "tun", "address", "peer_address", "state"]

    # --- the steps -------------------------------------------------------------------

    def _stop(self, host: SshSession, peer: SshSession, tunnel: plans.Tunnel) -> None:
        """TERM our processes by PID, KILL what is left after a bounded wait, forget the
        pid file; then wait for tunN to be gone on both ends."""
        dev = plans.device(tunnel["tun"])
        apply(host, plans.plan_unit_stop(tunnel, boot.has_systemd(host)))
        for signal in ("TERM", "KILL"):
            current = _Facts(host, peer, tunnel)
            if not plans.our_processes(tunnel, current.keeper):
                break
            apply(host, plans.plan_stop(tunnel, current.keeper, signal))
            if self._wait(lambda: not self._running(host, peer, tunnel), STOP_TIMEOUT_S):
                break
        current = _Facts(host, peer, tunnel)
        left = plans.our_processes(tunnel, current.keeper)
        if left:
            raise RuntimeError(
                f"{host.endpoint.name}: the keeper of {dev} (pids {left}) survived TERM and KILL"
            )
        apply(host, plans.plan_stop(tunnel, current.keeper))  # forget the pid file
        # Our persistent tunN stay; one that ssh made goes with it, and the peer's sshd
        # lets go of its own a little later.
        if not self._wait(
            lambda: not _Facts(host, peer, tunnel).foreign_device, DEVICE_GONE_TIMEOUT_S
        ):
            final = _Facts(host, peer, tunnel)
            still = [
                name
                for name, device in (
                    (host.endpoint.name, final.host_device),
                    (peer.endpoint.name, final.peer_device),
                )
                if device is not None and not plans.is_ours(final.alias, device)
            ]
            raise RuntimeError(
                f"{dev} still exists on {', '.join(still)} {DEVICE_GONE_TIMEOUT_S:.0f} s after "
                "glidepath stopped its keeper: another process holds it"
            )

    @staticmethod
    def _running(host: SshSession, peer: SshSession, tunnel: plans.Tunnel) -> list[int]:
        return plans.our_processes(tunnel, _Facts(host, peer, tunnel).keeper)

    @staticmethod
    def _wait(done: Callable[[], object], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if done():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_S)

    @staticmethod
    def _log_tail(host: SshSession, tunnel: plans.Tunnel) -> str:
        """The keeper's last words (ssh's errors land there), for an error message."""
        path = plans.log_file(tunnel)
        result = host.run(["tail", "-n", "8", "--", path], check=False)
        tail = result.stdout.strip() if result.ok else ""
        return f"\nkeeper log ({path}):\n{tail}" if tail else ""

    def converge(
        self, session: SshSession, props: dict[str, Any], olds: dict[str, Any] | None
    ) -> dict[str, Any]:
        """Make the link up with these parameters; return the outputs. On failure, stop
        what this call started and remove the devices it created, so nothing is left
        half-applied. Not the base's facts-plan-apply steps: two hosts, a keeper to stop
        first when it runs with other parameters, and one to wait for."""
        host, peer = session, self.session(props, "peer")
        tunnel = _tunnel(props)
        dev = plans.device(tunnel["tun"])
        current = _Facts(host, peer, tunnel)
        if plans.needs_stop(tunnel, current.keeper) or (
            plans.keeper_status(tunnel, current.keeper) == "current" and current.foreign_device
        ):
            # Other parameters, or our keeper's ssh runs on a tunN it made itself (an older
            # glidepath, or ours deleted by hand): restart on persistent devices.
            self._stop(host, peer, tunnel)
            current = _Facts(host, peer, tunnel)
        if plans.keeper_status(tunnel, current.keeper) != "current" and current.foreign_device:
            # A link that just died (a keeper killed by hand, our own restart) leaves the
            # peer's tunN to its sshd for a few seconds: wait it out before calling it a clash.
            self._wait(lambda: not _Facts(host, peer, tunnel).foreign_device, DEVICE_GONE_TIMEOUT_S)
            current = _Facts(host, peer, tunnel)
        systemd = boot.has_systemd(host)
        start = plans.plan_start(
            tunnel, current.keeper, current.host_device, current.peer_device, current.alias, systemd
        )
        records = _records(tunnel, current.alias)
        host_end = plans.plan_device(dev, tunnel["address"], current.alias, current.host_device)
        peer_end = plans.plan_device(
            dev, tunnel["peer_address"], current.alias, current.peer_device
        )
        created = [
            session
            for session, device in ((host, current.host_device), (peer, current.peer_device))
            if device is None
        ]
        started = False
        try:
            apply(host, host_end)
            apply(peer, peer_end)
            apply(host, plans.plan_script(host.read_file(plans.SCRIPT_PATH)))
            # Before the start: on a systemd host its unit reads the keeper's record.
            for side, (name, fields) in records.items():
                kind = "keeper" if side == "keeper" else "tundev"
                boot.keep(peer if side == "peer" else host, kind, name, fields)
            apply(host, start)
            started = bool(start)
            if started and not self._wait(
                lambda: plans.keeper_status(tunnel, _Facts(host, peer, tunnel).keeper) == "current",
                KEEPER_START_TIMEOUT_S,
            ):
                raise RuntimeError(
                    f"{host.endpoint.name}: the keeper of {dev} did not write "
                    f"{plans.pid_file(tunnel)} within {KEEPER_START_TIMEOUT_S:.0f} s"
                    + self._log_tail(host, tunnel)
                )
            current = _Facts(host, peer, tunnel)
            if current.state != "up":
                self._wait(lambda: _Facts(host, peer, tunnel).state == "up", UP_TIMEOUT_S)
                current = _Facts(host, peer, tunnel)
            if current.state != "up":
                raise RuntimeError(
                    f"tunnel {dev} {host.endpoint.name} -> {peer.endpoint.name} is not up "
                    f"after {UP_TIMEOUT_S:.0f} s: "
                    f"{current.describe(host.endpoint.name, peer.endpoint.name)}"
                    + self._log_tail(host, tunnel)
                )
        except Exception:
            if started:
                self._stop(host, peer, tunnel)
            self._remove_devices(created, current.alias, tunnel)
            if olds is None:  # a link that never came up is not restored at boot either
                self._forget(host, peer, tunnel, current.alias)
            raise
        return self._outputs(props, current)

    @staticmethod
    def _forget(host: SshSession, peer: SshSession, tunnel: plans.Tunnel, alias: str) -> None:
        for side, (name, _fields) in _records(tunnel, alias).items():
            boot.forget(peer if side == "peer" else host, name)

    @staticmethod
    def _remove_devices(sessions: Iterable[SshSession], alias: str, tunnel: plans.Tunnel) -> None:
        """Remove our persistent tunN on these hosts (read afresh: ours only)."""
        dev = plans.device(tunnel["tun"])
        for session in sessions:
            found = facts.process_device(session.run(facts.device_command(dev), check=False))
            apply(session, plans.plan_remove_device(dev, alias, found))

    @staticmethod
    def _outputs(props: dict[str, Any], current: _Facts) -> dict[str, Any]:
        tunnel = current.tunnel
        pid = current.keeper["pid"]
        running = plans.keeper_status(tunnel, current.keeper) in ("current", "outdated")
        # `address`/`peer_address` stay the desired values (the keeper's parameters, needed
        # to recognise it); what each end really has goes to `actual`, and `state` carries
        # the drift that makes the next `up` repair the link.
        return {
            **props,
            "state": current.state,
            "keeper_pid": pid if running else None,
            "actual": {
                "host": _end(tunnel["address"], current.host_device),
                "peer": _end(tunnel["peer_address"], current.peer_device),
            },
        }

    # --- the other hooks -------------------------------------------------------------

    def resource_id(self, outputs: dict[str, Any]) -> str:
        return f"{outputs['host']['name']}:{outputs['peer']['name']}:tun{outputs['tun']}"

    def observe(self, session: SshSession, props: dict[str, Any]) -> dict[str, Any] | None:
        host, peer = session, self.session(props, "peer")
        # Never gone: a tunnel whose keeper died reads as down, and `up` restarts it.
        found = self._outputs(props, _Facts(host, peer, _tunnel(props)))
        if found["state"] == "up" and props.get("keeper_pid") is not None:
            # A keeper with these parameters runs: that it was restarted (the host rebooted,
            # its unit restarted it) is no drift, so the pid stored at `up` stays.
            found["keeper_pid"] = props["keeper_pid"]
        return found

    def remove(self, session: SshSession, props: dict[str, Any]) -> None:
        # The script is left in place: it is shared by every tunnel of the host, has fixed
        # content, and does nothing unless started.
        host, peer = session, self.session(props, "peer")
        tunnel = _tunnel(props)
        self._stop(host, peer, tunnel)
        alias = plans.owner_alias(host.endpoint.address, peer.endpoint.address)
        self._remove_devices((host, peer), alias, tunnel)
        self._forget(host, peer, tunnel, alias)


class Tunnel(Resource, module="net", name="Tunnel"):
    """`ssh -w tun:tun` from `host` to `peer`, kept alive, with `address` on the host's
    tunN and `peer_address` on the peer's."""

    def __init__(
        self,
        resource_name: str,
        host: pulumi.Input[dict[str, Any]],
        peer: pulumi.Input[dict[str, Any]],
        tun: pulumi.Input[int],
        address: pulumi.Input[str],
        peer_address: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            TunnelProvider(),
            resource_name,
            {
                "host": host,
                "peer": peer,
                "tun": tun,
                "address": address,
                "peer_address": peer_address,
                "state": None,  # an output; as an input, the model's default (up)
                "keeper_pid": None,
                "actual": None,
            },
            opts,
        )
