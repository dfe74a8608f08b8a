"""Sysctl: one kernel parameter on one host (rp_filter, ip_forward, proxy_arp, ...).

Identity is (host, key); a new value or owner is an update. Every stack that sets the
same key on a host shares it: each resource holds it with its owner's file (`owner`, the
stack as `<project>.<stack>`, under providers.owners.OWNERS_DIR/sysctl.<key>/), the first
owner keeps the value from before glidepath beside those files, and delete puts that
value back only when the last owner lets go, unless someone changed it since.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import pulumi
from pulumi.dynamic import Resource

from providers import owners
from providers.base import Converged, HostProvider, Plans, apply
from providers.boot import persist
from providers.facts import sysctl as facts
from providers.plans import sysctl as plans
from providers.schema.sysctl import SysctlArgs
from providers.transport import SshSession


def _current(session: SshSession, key: str) -> str | None:
    return facts.process(session.run(facts.command(key), check=False))


class _Found(NamedTuple):
    current: str | None  # the value now; None: no such key
    held_by: set[str]  # the owners holding the key
    saved: str | None  # the value from before glidepath, kept by the first owner
    persisted: str | None  # its file in /etc/sysctl.d (persist.sysctl_file), as it is


def _held(session: SshSession, key: str) -> _Found:
    saved = session.read_file(plans.saved_path(key))
    return _Found(
        _current(session, key),
        owners.process(session.run(owners.list_command(plans.artifact(key)), check=False)),
        None if saved is None else saved.strip(),
        session.read_file(persist.sysctl_file(key)),
    )


class SysctlProvider(HostProvider[_Found]):
    identity = ("host", "key")

    schema = SysctlArgs

    def diffed_fields(self, news: dict[str, Any]) -> list[str]:
        return ["host", "key", "value", "owner"]

    def facts(self, session: SshSession, props: dict[str, Any]) -> _Found:
        return _held(session, props["key"])

    def plan(self, props: dict[str, Any], found: _Found, olds: dict[str, Any] | None) -> Plans:
        key, owner = props["key"], props["owner"]
        setting = plans.plan_set(key, props["value"], found.current)  # fails before writing
        previous = olds.get("previous") if olds else None
        yield plans.plan_save(key, found.current, found.held_by, found.saved, previous)
        yield owners.plan_claim(plans.artifact(key), owner, found.held_by)
        renamed = olds.get("owner") if olds else None
        if renamed not in (None, owner):
            # The stack's owner name changed: the old name's hold was ours too.
            yield owners.plan_release(plans.artifact(key), renamed, found.held_by | {owner})
        yield setting
        # The OS applies /etc/sysctl.d at boot: the value outlives a restart.
        yield persist.plan_sysctl(key, props["value"], found.persisted)

    def read_back(self, session: SshSession, props: dict[str, Any], before: _Found) -> _Found:
        return before._replace(current=_current(session, props["key"]))

    def verify(self, props: dict[str, Any], found: _Found) -> str | None:
        if found.current == props["value"]:
            return None
        return f"sysctl {props['key']} reads {found.current} after setting {props['value']}"

    def outputs(self, done: Converged[_Found]) -> dict[str, Any]:
        # `previous`: the value before this resource first set it (the host keeps the one
        # from before glidepath for the last owner; this is the fallback without it).
        previous = done.before.current if done.olds is None else done.olds.get("previous")
        return {**done.props, "previous": previous, "actual": done.after.current}

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
        found = _held(session, key)
        plan = plans.plan_release(
            key,
            props["owner"],
            found.held_by,
            props["value"],
            props.get("previous"),
            found.saved,
            found.current,
        )
        if owners.others(props["owner"], found.held_by):
            print(f"{session.endpoint.name}: {plan.reason}", flush=True)  # the engine relays it
            apply(session, plan)
            return
        apply(session, plan)
        # The last owner: the value no longer comes back at boot.
        apply(session, persist.plan_sysctl_forget(key, found.persisted is not None))


class Sysctl(Resource, module="net", name="Sysctl"):
    """A kernel parameter on a host, set over SSH."""

    def __init__(
        self,
        resource_name: str,
        host: pulumi.Input[dict[str, Any]],
        key: pulumi.Input[str],
        value: pulumi.Input[str],
        owner: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            SysctlProvider(),
            resource_name,
            {
                "host": host,
                "key": key,
                "value": value,
                "owner": owner,
                "previous": None,
                "actual": None,
            },
            opts,
        )
