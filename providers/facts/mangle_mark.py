"""The rules of the mangle table: `iptables-save -t mangle`, parsed into typed rules.

iptables-save is the canonical dump (the same text for the nft and legacy backends) and
reads the table in one go; unlike `iptables` it has no `-w` option and needs none.
"""

from __future__ import annotations

import ipaddress
import shlex
from typing import TypedDict

FULL_MASK = 0xFFFFFFFF


class Rule(TypedDict, total=False):
    """One `-A` line of the mangle table, in iptables vocabulary.

    `-A PREROUTING -s 203.0.113.0/29 -i vif+ -m comment --comment glidepath
    -j MARK --set-xmark 0x1/0xffffffff` ->
    {"chain": "PREROUTING", "source": "203.0.113.0/29", "in_interface": "vif+",
     "comment": "glidepath", "target": "MARK", "mark": 1, "mask": 4294967295, "other": []}

    Matches and target options we do not model are kept, in order, in `other`, so a rule
    with extra conditions never compares equal to a plain one.
    """

    chain: str
    source: str | None
    in_interface: str | None
    comment: str | None
    target: str | None
    mark: int | None
    mask: int | None
    other: list[str]


def command() -> list[str]:
    return ["iptables-save", "-t", "mangle"]


def _source(value: str) -> str:
    # iptables-save already prints a.b.c.d/n; canonicalise anyway so that any spelling of
    # one prefix compares equal to the checked input.
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        return value


def _mark(value: str) -> tuple[int, int] | None:
    """'0x1/0xffffffff' -> (1, 0xffffffff); '0x1' -> (1, 0xffffffff); junk -> None.

    Both backends print `--set-mark 1` as `--set-xmark 0x1/0xffffffff` (set = zero the
    masked bits, then XOR the value in), which is why we compare numbers, not text.
    """
    value_text, _, mask_text = value.partition("/")
    try:
        return int(value_text, 0), int(mask_text, 0) if mask_text else FULL_MASK
    except ValueError:
        return None


def parse_rule(line: str) -> Rule:
    """One `-A CHAIN ...` line -> Rule (the caller has checked it starts with -A)."""
    words = shlex.split(line)  # iptables-save double-quotes comments with spaces
    rule: Rule = {
        "chain": words[1],
        "source": None,
        "in_interface": None,
        "comment": None,
        "target": None,
        "mark": None,
        "mask": None,
        "other": [],
    }
    i = 2
    while i < len(words):
        word = words[i]
        following = words[i + 1] if i + 1 < len(words) else None
        if word == "!":
            # A negated match (`! -s x`) is a different rule from ours: keep it verbatim.
            rule["other"].extend(words[i : i + 3])
            i += 3
            continue
        if following is not None:
            if word == "-s" and rule["source"] is None:
                rule["source"] = _source(following)
                i += 2
                continue
            if word == "-i" and rule["in_interface"] is None:
                rule["in_interface"] = following
                i += 2
                continue
            if word == "-m" and following == "comment":
                i += 2
                continue
            if word == "--comment" and rule["comment"] is None:
                rule["comment"] = following
                i += 2
                continue
            if word == "-j" and rule["target"] is None:
                rule["target"] = following
                i += 2
                continue
            if word in ("--set-xmark", "--set-mark") and rule["target"] == "MARK":
                parsed = _mark(following)
                if parsed is not None and rule["mark"] is None:
                    rule["mark"], rule["mask"] = parsed
                    i += 2
                    continue
        rule["other"].append(word)
        i += 1
    return rule


def process(text: str) -> list[Rule]:
    """iptables-save output -> the mangle table's rules, in chain order as listed.

    Only the `*mangle` section is read (the command asks for it alone; this guards
    against being handed a full dump). No table at all (nothing ever loaded) -> [].
    """
    rules: list[Rule] = []
    in_mangle = False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("*"):
            in_mangle = line == "*mangle"
        elif line == "COMMIT":
            in_mangle = False
        elif in_mangle and line.startswith("-A "):
            rules.append(parse_rule(line))
    return rules
