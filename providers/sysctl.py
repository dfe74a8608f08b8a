"""Sysctl: one kernel parameter on one host (rp_filter, ip_forward, proxy_arp, ...).

Identity is (host, key); a new value is an update. Delete puts back the value that was
there before glidepath set it, unless someone changed it since.
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import Resource

from providers import validate
from providers.base import Converged, HostProvider, Plans, apply
from providers.facts import sysctl as facts
from providers.plans import sysctl as plans
from providers.transport import SshSession


def _current(session: SshSession, key: str) -> str | None:
    return facts.process(session.run(facts.command(key), check=False))


class SysctlProvider(HostProvider[str | None]):
    identity = ("host", "key")

    def check_inputs(self, checker: validate.Checker) -> None:
        checker.field("key", validate.sysctl_key)
        checker.field("value", validate.sysctl_value)

    def diffed_fields(self, news: dict[str, Any]) -> list[str]:
        return ["host", "key", "value"]

    def facts(self, session: SshSession, props: dict[str, Any]) -> str | None:
        return _current(session, props["key"])

    def plan(self, props: dict[str, Any], found: str | None, olds: dict[str, Any] | None) -> Plans:
        yield plans.plan_set(props["key"], props["value"], found)

    def verify(self, props: dict[str, Any], found: str | None) -> str | None:
        if found == props["value"]:
            return None
        return f"sysctl {props['key']} reads {found} after setting {props['value']}"

    def outputs(self, done: Converged[str | None]) -> dict[str, Any]:
        # `previous`: the value before glidepath first set it, which delete puts back.
        previous = done.before if done.olds is None else done.olds.get("previous")
        return {**done.props, "previous": previous, "actual": done.after}

    def resource_id(self, outputs: dict[str, Any]) -> str:
        return f"{outputs['host']['name']}:{outputs['key']}"

    def observe(self, session: SshSession, props: dict[str, Any]) -> dict[str, Any] | None:
        actual = _current(session, props["key"])
        if actual is None:
            return None  # the key is gone (interface removed): resource gone
        # Report drift where refresh compares it: `value` is what the host has now.
        return {**props, "value": actual, "actual": actual}

    def remove(self, session: SshSession, props: dict[str, Any]) -> None:
        key = props["key"]
        plan = plans.plan_restore(
            key, props["value"], props.get("previous"), _current(session, key)
        )
        apply(session, plan)


class Sysctl(Resource, module="net", name="Sysctl"):
    """A kernel parameter on a host, set over SSH."""

    actual: pulumi.Output[str]
    previous: pulumi.Output[str | None]

    def __init__(
        self,
        resource_name: str,
        host: pulumi.Input[dict[str, Any]],
        key: pulumi.Input[str],
        value: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            SysctlProvider(),
            resource_name,
            {"host": host, "key": key, "value": value, "previous": None, "actual": None},
            opts,
        )
