"""Upstream: which host the provider routes a network's prefix to. An update is the cutover.

The cutover keeps DESIGN.md's invariant (each VM's traffic leaves through the host the
prefix is routed to):
1. watch the new upstream's uplink for the first packet for the prefix (tcpdump);
2. switch (the backend; a switch call without an answer in time may still switch, so
   the watch goes on);
3. at the first packet: remove the new upstream's egress mark (its VMs now leave
   directly) and add the mark on the hosts that stop being upstream (their VMs must
   now leave through the tunnel) - the blog's `tcpdump ... && iptables -F`, both ways;
4. check the VMs answer through the provider's network where the backend can tell.
The MangleMark resources of the new layout depend on this resource, so they find the
rules in place and adopt them; the old layout's leftovers are deleted at the end.
The preview of a `hetzner-robot` cutover (the diff) asks Robot once whether it can work.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, UpdateResult

from providers import validate
from providers.base import HostProvider, apply
from providers.boot import host as boot
from providers.cutover import Backend, CutoverError, SwitchPending, backend_for
from providers.facts import mangle_mark as mark_facts
from providers.mangle_mark import record_fields, record_name
from providers.plans import cutover as cutover_plans
from providers.plans import mangle_mark as mark_plans
from providers.schema.host import main_address
from providers.schema.upstream import Cutover, UpstreamArgs
from providers.transport import SshSession


def _log(line: str) -> None:
    print(line, flush=True)


class UpstreamProvider(HostProvider):
    identity = ("network",)
    schema = UpstreamArgs

    def __init__(self) -> None:
        super().__init__()
        self._robot_credentials: dict[str, str] | None = None

    def diffed_fields(self, news: dict[str, Any]) -> list[str]:
        return ["network", "prefix", "upstream", "hosts", "marked", "mark", "cutover"]

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        result = super().diff(id_, olds, news)
        if olds.get("upstream") != news.get("upstream") and not validate.is_unknown(
            news.get("upstream")
        ):
            _log(
                f"{news['network']}: cutover {news['prefix']} {olds.get('upstream')} -> "
                f"{news['upstream']} ({news['cutover']['kind']}), then drop "
                f"{news['upstream']}'s egress mark at the first direct packet"
            )
            if not validate.has_unknown(news) and news["cutover"]["kind"] == "hetzner-robot":
                self._check_robot(olds.get("upstream"), self.canonical(news))
        return result

    def _check_robot(self, current: str | None, props: dict[str, Any]) -> None:
        """At preview (the diff), before a Robot cutover: one read-only GET says whether
        it can work (credentials, a failover net, routed to the current upstream now);
        the `up` would otherwise fail only after every VM has moved."""
        from providers.cutover.hetzner_robot import HetznerRobot

        network, target = props["network"], props["upstream"]
        try:
            backend = self._backend(props)
            assert isinstance(backend, HetznerRobot)
            if backend.placeholders:
                _log(
                    f"{network}: glidepath:robot holds placeholders: the preview did not ask "
                    "Robot; `up` needs the web service user"
                )
                return
            main_ips = {name: main_address(host) for name, host in props["hosts"].items()}
            _log(f"{network}: {backend.check_switch(current, target, main_ips)}")
        except CutoverError as error:
            raise CutoverError(
                f"{network}: cannot cut over {props['prefix']} {current} -> {target}: {error}"
            ) from None

    def _session(self, props: dict[str, Any], host: str) -> SshSession:
        return self.session({"host": props["hosts"][host]})

    def _backend(self, props: dict[str, Any]) -> Backend:
        return backend_for(props["cutover"], props["prefix"], self)

    def robot_credentials(self) -> dict[str, str]:
        if not self._robot_credentials:
            raise CutoverError(
                "glidepath:robot (user and password, as secrets) is not set: the hetzner-robot "
                "cutover needs them"
            )
        return self._robot_credentials

    def configure(self, req: Any) -> None:
        super().configure(req)
        robot = req.config.get("robot")
        if isinstance(robot, str):
            import json

            robot = json.loads(robot)
        from providers.cutover.hetzner_robot import robot_credentials

        robot = robot_credentials(robot)
        self._robot_credentials = robot if isinstance(robot, dict) else None

    def _host_by_address(self, props: dict[str, Any], address: str | None) -> str | None:
        """The host whose main IP the backend routes the prefix to (`address`)."""
        for name, host in props["hosts"].items():
            if main_address(host) == address:
                return str(name)
        return None

    def _mark_rule(self, props: dict[str, Any]) -> Any:
        return mark_plans.desired_rule(
            "PREROUTING",
            props["prefix"],
            "vif+",
            int(props["mark"]),
            f"glidepath {props['network']}",
        )

    def _set_mark(self, props: dict[str, Any], host: str, present: bool) -> None:
        session = self._session(props, host)
        rules = mark_facts.process(session.run(mark_facts.command()).stdout)
        rule = self._mark_rule(props)
        plan = mark_plans.plan_add(rule, rules) if present else mark_plans.plan_delete(rule, rules)
        apply(session, plan)

    def _persist_marks(
        self, props: dict[str, Any], present: Sequence[str], absent: Sequence[str]
    ) -> None:
        """The marks' boot records as the cutover left the marks (the MangleMark resources
        of this `up` take them over): after the switch, not in the outage's path."""
        rule = self._mark_rule(props)
        for host in present:
            boot.keep(self._session(props, host), "mark", record_name(rule), record_fields(rule))
        for host in absent:
            boot.forget(self._session(props, host), record_name(rule))

    def cutover(
        self, props: dict[str, Any], previous: str | None, *, switch: bool = True
    ) -> dict[str, Any]:
        """Switch the prefix to the new upstream (`switch`; without it the backend already
        routes it there: an earlier cutover's watch ran out) and move the egress at the
        first packet that arrives there directly, never before."""
        target = props["upstream"]
        host = props["hosts"][target]
        backend = self._backend(props)
        session = self._session(props, target)
        timeout = int(props["first_packet_timeout_s"])
        # The new upstream drops its own mark itself at the first direct packet (one
        # command on the host, as in the blog): no SSH round trip in the outage.
        rules = mark_facts.process(session.run(mark_facts.command()).stdout)
        unmark = mark_plans.plan_delete(self._mark_rule(props), rules)
        trigger = cutover_plans.on_first_packet(timeout, host["uplink"], props["prefix"], unmark)
        watcher = session.start(trigger.argv)
        finished = False
        pid = None
        pending = None
        try:
            pid = cutover_plans.parse_pid(watcher.next_line(10) or "")
            if pid is None or not watcher.wait_for_stderr("listening on", timeout=10):
                raise CutoverError(
                    f"{target}: could not watch {host['uplink']} for the first packet: "
                    f"{watcher.stderr.strip() or 'no answer within 10 s'}"
                )
            started = time.monotonic()
            if switch:
                _log(
                    f"{props['network']}: switching {props['prefix']} to {target} ({backend.kind})"
                )
                try:
                    backend.switch(main_address(host))
                except SwitchPending as error:
                    # It may still switch: the watch, already running, will see it.
                    pending = str(error)
                    _log(f"{props['network']}: {pending}; watching on for the first packet")
            else:
                _log(
                    f"{props['network']}: {props['prefix']} is routed to {target}; waiting for "
                    f"its first direct packet there before its egress mark goes"
                )
            switched = time.monotonic() - started
            backend.nudge(list(props["vm_addresses"]))
            seen = watcher.next_line(timeout + 5)
            first_packet = time.monotonic() - started
            done = watcher.next_line(30)
            egress_switched = time.monotonic() - started
            status = watcher.wait(10)
            finished = True
        finally:
            if pid is not None and not finished:
                # The switch failed or we gave up waiting: the host must not drop its mark
                # later on its own, so stop the script (the route did not move).
                with contextlib.suppress(Exception):
                    session.run(["kill", str(pid)], check=False)
            watcher.close()
        if seen == cutover_plans.NO_PACKET:
            said = f" ({pending})" if pending else ""
            raise CutoverError(self._no_packet(props, backend, timeout) + said)
        if done != cutover_plans.DONE or status != 0:
            raise CutoverError(
                f"{props['network']}: the route points to {target}, but dropping its egress "
                f"mark failed ({watcher.stderr.strip() or f'exit status {status}'}); "
                "run `pulumi up` again to finish"
            )
        _log(
            f"{props['network']}: first packet on {target} {first_packet * 1000:.0f} ms "
            f"after the switch; its egress mark dropped "
            f"{(egress_switched - first_packet) * 1000:.0f} ms later"
        )
        # The hosts that stop being upstream: their VMs now leave through the tunnel.
        for other in props["marked"]:
            self._set_mark(props, other, present=True)
        marks_done = time.monotonic() - started
        self._persist_marks(props, props["marked"], [target])
        silent = backend.unreachable(list(props["vm_addresses"]))
        if silent:
            raise CutoverError(
                f"{props['network']}: after the switch to {target}, these VMs do not answer "
                f"through the provider's network: {', '.join(silent)}. The route points to "
                f"{target}; check each VM's host and its egress path, then `pulumi up` again."
            )
        return {
            "from": previous,
            "to": target,
            "switch_ms": round(switched * 1000),
            "first_packet_ms": round(first_packet * 1000),
            "egress_switched_ms": round(egress_switched * 1000),
            "marks_done_ms": round(marks_done * 1000),
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }

    @staticmethod
    def _no_packet(props: dict[str, Any], backend: Backend, timeout: int) -> str:
        target = props["upstream"]
        host = props["hosts"][target]
        where = (
            f"Route {props['prefix']} to {main_address(host)} at your provider"
            if backend.kind == "manual"
            else f"Check that {backend.kind} routes {props['prefix']} to {main_address(host)}"
        )
        return (
            f"{props['network']}: no packet for {props['prefix']} arrived directly at "
            f"{target} ({host['uplink']}) within {timeout} s. {target}'s egress mark stays: "
            "its VMs keep leaving through the tunnel, so nothing is cut. "
            f"{where}, then run `pulumi up` again: it waits for the first direct packet "
            "again before it moves the egress."
        )

    def create(self, props: dict[str, Any]) -> CreateResult:
        props = self.canonical(props)
        current = self._host_by_address(props, self._backend(props).current())
        last = None
        if current != props["upstream"] and props["cutover"]["kind"] != "manual":
            last = self.cutover(props, current)
        else:
            last = self._settle_marks(props)
        return CreateResult(props["network"], {**props, "last_cutover": last})

    def _settle_marks(self, props: dict[str, Any]) -> dict[str, Any] | None:
        """Without a switch: the upstream's VMs leave directly, the other hosts' through
        the tunnel. A mark still on the upstream is an earlier cutover whose first packet
        never came: it goes only at the first direct packet, as in a cutover (the watch
        again, without switching); returns that cutover's record."""
        upstream = props["upstream"]
        session = self._session(props, upstream)
        rules = mark_facts.process(session.run(mark_facts.command()).stdout)
        if mark_plans.plan_delete(self._mark_rule(props), rules):
            return self.cutover(props, upstream, switch=False)
        for other in props["marked"]:
            self._set_mark(props, other, present=True)
        self._persist_marks(props, props["marked"], [])
        return None

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        olds, news = self.canonical(olds), self.canonical(news)
        last = olds.get("last_cutover")
        current = self._host_by_address(news, self._backend(news).current()) or olds.get("upstream")
        if current != news["upstream"]:
            last = self.cutover(news, current)
        else:
            last = self._settle_marks(news) or last
        return UpdateResult({**news, "last_cutover": last})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        props = self.canonical(props)
        routed = self._backend(props).current()
        if routed is None:
            return ReadResult(id_, props)  # the backend cannot tell (manual): trust the state
        host = self._host_by_address(props, routed) or f"unknown ({routed})"
        return ReadResult(id_, {**props, "upstream": host})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        props = self.canonical(props)
        # The prefix stays routed where it is: un-routing a provider's IP is never wanted.
        _log(f"{props['network']}: {props['prefix']} stays routed to {props['upstream']}")
        # The MangleMark resources are gone by now (they depend on this one). A cutover
        # that failed after its switch set marks no resource took over yet (the state
        # still holds the previous layout): without this they would outlive the network.
        for host in props["hosts"]:
            self._set_mark(props, host, present=False)
        self._persist_marks(props, [], list(props["hosts"]))


class Upstream(Resource, module="net", name="Upstream"):
    """Where the provider routes a network's prefix; changing it is the cutover.

    The inputs are UpstreamArgs' (providers/schema/upstream.py); one left None takes its
    default there."""

    last_cutover: pulumi.Output[Any]

    def __init__(
        self,
        resource_name: str,
        *,
        network: str,
        prefix: str,
        hosts: Mapping[str, pulumi.Input[dict[str, Any]]],
        upstream: str,
        mark: int,
        cutover: Cutover,
        marked: Sequence[str] = (),
        first_packet_timeout_s: int | None = None,
        vm_addresses: Sequence[str] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            UpstreamProvider(),
            resource_name,
            {
                "network": network,
                "prefix": prefix,
                "hosts": dict(hosts),
                "upstream": upstream,
                "marked": list(marked),
                "mark": mark,
                # As the stack gives it (the model's dump leaves out the defaults).
                "cutover": cutover.model_dump(),
                "first_packet_timeout_s": first_packet_timeout_s,
                "vm_addresses": list(vm_addresses),
                "last_cutover": None,
            },
            opts,
        )
