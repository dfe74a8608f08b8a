"""MangleMark plans: the blog's `iptables -t mangle -A PREROUTING -s <prefix> -i vif+ -j MARK
--set-mark M`, tagged `-m comment --comment glidepath...` so that we only ever remove ours.

Rules are compared as parsed facts (providers.facts.mangle_mark.Rule), never as text: the
kernel hands `--set-mark 1` back as `--set-xmark 0x1/0xffffffff`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from providers.facts.mangle_mark import FULL_MASK, Rule
from providers.plans import Argv, Plan, PlanError
from providers.schema.mangle_mark import OWNER


def is_ours(rule: Mapping[str, Any]) -> bool:
    comment = rule.get("comment") or ""
    return bool(comment == OWNER or comment.startswith(OWNER + " "))


def desired_rule(
    chain: str, source: str, in_interface: str, mark: int, comment: str = OWNER
) -> Rule:
    return {
        "chain": chain,
        "source": source,
        "in_interface": in_interface,
        "comment": comment,
        "target": "MARK",
        "mark": mark,
        "mask": FULL_MASK,
        "other": [],
    }


def rule_key(rule: Mapping[str, Any]) -> tuple[Any, ...]:
    # Missing keys and None are the same thing, so plan cases can leave fields out.
    return (
        rule.get("chain"),
        rule.get("source"),
        rule.get("in_interface"),
        rule.get("comment"),
        rule.get("target"),
        rule.get("mark"),
        rule.get("mask") if rule.get("target") == "MARK" else None,
        tuple(rule.get("other") or ()),
    )


def copies_of(rule: Mapping[str, Any], rules: Sequence[Mapping[str, Any]]) -> int:
    """How many of `rules` are exactly `rule` (read reports it as the resource's `copies`)."""
    return sum(1 for found in rules if rule_key(found) == rule_key(rule))


def _copies_of_ours(rule: Mapping[str, Any], rules: Sequence[Mapping[str, Any]]) -> int:
    if not is_ours(rule):
        # Never happens with checked inputs; refuse rather than touch someone's rule.
        raise PlanError(f"comment {rule.get('comment')!r} does not mark the rule as ours")
    return copies_of(rule, rules)


def rule_spec(rule: Mapping[str, Any]) -> list[str]:
    """The match and target arguments after `-A/-D CHAIN`, one argv element per value."""
    return [
        "-s",
        str(rule["source"]),
        "-i",
        str(rule["in_interface"]),
        "-m",
        "comment",
        "--comment",
        str(rule["comment"]),
        "-j",
        "MARK",
        "--set-mark",
        str(rule["mark"]),
    ]


def _iptables(action: str, rule: Mapping[str, Any]) -> Argv:
    # -w: wait for the xtables lock instead of failing when another tool holds it.
    return ("iptables", "-w", "-t", "mangle", action, str(rule["chain"]), *rule_spec(rule))


def _describe(rule: Mapping[str, Any]) -> str:
    return (
        f"{rule['chain']} -s {rule['source']} -i {rule['in_interface']} MARK {int(rule['mark']):#x}"
    )


def _clash(desired: Mapping[str, Any], rules: Sequence[Mapping[str, Any]]) -> None:
    """A rule that is not ours and matches exactly the same packets, but does something
    else with them (another mark, or a target that ends the chain before ours runs)."""
    for rule in rules:
        if is_ours(rule) or rule.get("other"):
            continue
        same_packets = (
            rule.get("chain") == desired["chain"]
            and rule.get("source") == desired["source"]
            and rule.get("in_interface") == desired["in_interface"]
        )
        same_action = (
            rule.get("target") == "MARK"
            and rule.get("mark") == desired["mark"]
            and rule.get("mask") == desired["mask"]
        )
        if same_packets and not same_action:
            action = (
                f"MARK {int(rule['mark']):#x}/{int(rule['mask'] or 0):#x}"
                if rule.get("target") == "MARK" and rule.get("mark") is not None
                else f"-j {rule.get('target')}"
            )
            raise PlanError(
                f"a rule not made by glidepath already handles {desired['chain']} "
                f"-s {desired['source']} -i {desired['in_interface']} with {action} "
                f"(comment {rule.get('comment')!r}); remove it, or set this network's "
                "mark to match"
            )


def plan_add(desired: Mapping[str, Any], rules: Sequence[Mapping[str, Any]]) -> Plan:
    """Make exactly one copy of `desired` exist in its chain."""
    copies = _copies_of_ours(desired, rules)
    if copies == 1:
        return Plan.nothing(f"mangle rule {_describe(desired)} is already present")
    if copies > 1:
        # Copies are identical: removing all but one changes no packet's mark.
        return Plan.run(
            *[_iptables("-D", desired)] * (copies - 1),
            reason=f"mangle rule {_describe(desired)}: {copies} copies, removing {copies - 1}",
        )
    _clash(desired, rules)
    handmade = any(
        rule_key({**rule, "comment": desired["comment"]}) == rule_key(desired)
        for rule in rules
        if not is_ours(rule)
    )
    return Plan.run(
        _iptables("-A", desired),
        reason=f"add mangle rule {_describe(desired)}"
        + (" (an equal rule without our comment exists; it is left alone)" if handmade else ""),
    )


def plan_delete(ours: Mapping[str, Any], rules: Sequence[Mapping[str, Any]]) -> Plan:
    """Remove every copy of our rule, exactly as specified; other rules stay."""
    copies = _copies_of_ours(ours, rules)
    if copies == 0:
        return Plan.nothing(f"mangle rule {_describe(ours)} is already absent")
    return Plan.run(
        *[_iptables("-D", ours)] * copies,
        reason=f"delete mangle rule {_describe(ours)}"
        + (f" ({copies} copies)" if copies > 1 else ""),
    )
