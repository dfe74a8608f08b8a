"""MangleMark: the blog's egress mark for VM traffic on a host that is not the upstream.

    iptables -w -t mangle -A PREROUTING -s 203.0.113.0/29 -i vif+ \\
        -m comment --comment glidepath -j MARK --set-mark 1

The comment is how glidepath tells its rules from anyone else's: it must be `glidepath`
or start with `glidepath `, and delete removes only a rule with exactly our spec.

Every field is identity: a rule has no attribute to update in place, so any change is a
new rule. Replacement is create-before-delete (delete_before_replace=False): the new rule
is appended while the old one still marks traffic, so VM packets are never unmarked (an
unmarked packet would leave through this host's own uplink and be dropped upstream).
Where both match a packet, the later (new) rule's MARK wins, so the new mark takes effect
at once; the old rule is removed at the end of the run.

`copies` is derived: check sets the desired 1, read reports how many the host has, so a
duplicated rule shows as drift and `up` removes the extras. A chain flushed by hand (the
blog's `iptables -t mangle -F` at cutover) makes read report the resource gone.
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import Resource

from providers.base import Converged, HostProvider, Plans, apply
from providers.boot import host as boot
from providers.boot import persist
from providers.facts import mangle_mark as facts
from providers.facts.mangle_mark import Rule
from providers.plans import mangle_mark as plans
from providers.schema.mangle_mark import MangleMarkArgs
from providers.transport import SshSession


def _desired(props: dict[str, Any]) -> Rule:
    return plans.desired_rule(
        props["chain"],
        props["source"],
        props["in_interface"],
        int(props["mark"]),
        props["comment"],
    )


def record_name(rule: Rule) -> str:
    """The name of the rule's boot record (providers/boot), for MangleMark and for the
    Upstream, which adds and drops the same rule at a cutover."""
    return persist.record_name(
        "mark",
        rule["chain"],
        rule["source"],
        rule["in_interface"],
        f"{rule['mark']:#x}",
        rule["comment"],
    )


def record_fields(rule: Rule) -> dict[str, Any]:
    return {k: rule[k] for k in ("chain", "source", "in_interface", "comment", "mark")}


def _rules(session: SshSession) -> list[Rule]:
    return facts.process(session.run(facts.command()).stdout)


class MangleMarkProvider(HostProvider[list[Rule]]):
    identity = ("host", "chain", "source", "in_interface", "mark", "comment")
    schema = MangleMarkArgs

    def derived(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"copies": 1}  # the host must hold exactly one copy

    def diffed_fields(self, news: dict[str, Any]) -> list[str]:
        return [*self.identity, "copies"]

    def delete_before_replace(self) -> bool:
        return False  # see the module docstring: never leave VM traffic unmarked

    def facts(self, session: SshSession, props: dict[str, Any]) -> list[Rule]:
        return _rules(session)

    def plan(self, props: dict[str, Any], found: list[Rule], olds: dict[str, Any] | None) -> Plans:
        # On update only `copies` can differ (any other change is a replace): this puts
        # the host back to one copy.
        yield plans.plan_add(_desired(props), found)

    def verify(self, props: dict[str, Any], found: list[Rule]) -> str | None:
        desired = _desired(props)
        copies = plans.copies_of(desired, found)
        if copies == 1:
            return None
        return (
            f"mangle rule {' '.join(plans.rule_spec(desired))} "
            f"has {copies} copies after applying, expected 1"
        )

    def keep(self, session: SshSession, done: Converged[list[Rule]]) -> None:
        rule = _desired(done.props)
        boot.keep(session, "mark", record_name(rule), record_fields(rule))

    def outputs(self, done: Converged[list[Rule]]) -> dict[str, Any]:
        copies = plans.copies_of(_desired(done.props), done.after)
        return {**done.props, "mark": int(done.props["mark"]), "copies": copies}

    def resource_id(self, outputs: dict[str, Any]) -> str:
        return (
            f"{outputs['host']['name']}:mangle:{outputs['chain']}:{outputs['source']}:"
            f"{outputs['in_interface']}:{outputs['mark']:#x}"
        )

    def observe(self, session: SshSession, props: dict[str, Any]) -> dict[str, Any] | None:
        copies = plans.copies_of(_desired(props), _rules(session))
        if copies == 0:
            return None  # deleted or flushed by hand: the rule is gone
        return {**props, "copies": copies}

    def remove(self, session: SshSession, props: dict[str, Any]) -> None:
        apply(session, plans.plan_delete(_desired(props), _rules(session)))
        boot.forget(session, record_name(_desired(props)))


class MangleMark(Resource, module="net", name="MangleMark"):
    """`iptables -t mangle -A <chain> -s <source> -i <in_interface> -j MARK --set-mark <mark>`
    on a host, tagged with a glidepath comment."""

    def __init__(
        self,
        resource_name: str,
        host: pulumi.Input[dict[str, Any]],
        source: pulumi.Input[str],
        in_interface: pulumi.Input[str],
        mark: pulumi.Input[int],
        chain: pulumi.Input[str] | None = None,
        comment: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            MangleMarkProvider(),
            resource_name,
            {
                "host": host,
                "source": source,
                "in_interface": in_interface,
                "mark": mark,
                "chain": chain,
                "comment": comment,
                "copies": None,
            },
            opts,
        )
