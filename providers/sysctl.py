"""Sysctl: one kernel parameter on one host (rp_filter, ip_forward, proxy_arp, ...).

Identity is (host, key); a new value is an update. Delete puts back the value that was
there before glidepath set it, unless someone changed it since.
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, ReadResult, Resource, UpdateResult

from providers import validate
from providers.base import HostProvider, apply
from providers.facts import sysctl as facts
from providers.plans import sysctl as plans
from providers.transport import SshSession


def _current(session: SshSession, key: str) -> str | None:
    return facts.process(session.run(facts.command(key), check=False))


class SysctlProvider(HostProvider):
    identity = ("host", "key")

    def check_inputs(self, checker: validate.Checker) -> None:
        checker.field("key", validate.sysctl_key)
        checker.field("value", validate.sysctl_value)

    def diffed_fields(self, news: dict[str, Any]) -> list[str]:
        return ["host", "key", "value"]

    def create(self, props: dict[str, Any]) -> CreateResult:
        session = self.session(props)
        key, value = props["key"], props["value"]
        previous = _current(session, key)
        apply(session, plans.plan_set(key, value, previous))
        actual = _current(session, key)
        if actual != value:
            raise RuntimeError(
                f"{session.endpoint.name}: sysctl {key} reads {actual} after setting {value}"
            )
        return CreateResult(
            f"{props['host']['name']}:{key}", {**props, "previous": previous, "actual": actual}
        )

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        session = self.session(news)
        key, value = news["key"], news["value"]
        apply(session, plans.plan_set(key, value, _current(session, key)))
        actual = _current(session, key)
        if actual != value:
            raise RuntimeError(
                f"{session.endpoint.name}: sysctl {key} reads {actual} after setting {value}"
            )
        return UpdateResult({**news, "previous": olds.get("previous"), "actual": actual})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        session = self.session(props)
        actual = _current(session, props["key"])
        if actual is None:
            return ReadResult("", {})  # the key is gone (interface removed): resource gone
        # Report drift where refresh compares it: `value` is what the host has now.
        return ReadResult(id_, {**props, "value": actual, "actual": actual})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        session = self.session(props)
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
