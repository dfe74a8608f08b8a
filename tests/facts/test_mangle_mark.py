"""The mangle-table parser against real `iptables-save -t mangle` output (iptables 1.8.9,
nf_tables backend, captured in lab host `new` with the rules listed in each test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from providers.facts import mangle_mark as facts
from providers.plans import mangle_mark as plans

pytestmark = [pytest.mark.unit]

DATA = Path(__file__).parent / "data"
FULL = 0xFFFFFFFF


def _captured() -> list[facts.Rule]:
    return facts.process((DATA / "iptables_save_mangle_nft.txt").read_text())


def test_empty_table_has_no_rules() -> None:
    assert facts.process((DATA / "iptables_save_mangle_empty.txt").read_text()) == []


def test_no_output_at_all_has_no_rules() -> None:
    assert facts.process("") == []


def test_set_mark_1_comes_back_as_set_xmark_and_parses_to_numbers() -> None:
    # Added as: -A PREROUTING -s 203.0.113.0/29 -i vif+ -m comment --comment glidepath
    #           -j MARK --set-mark 1
    assert _captured()[0] == {
        "chain": "PREROUTING",
        "source": "203.0.113.0/29",
        "in_interface": "vif+",
        "comment": "glidepath",
        "target": "MARK",
        "mark": 1,
        "mask": FULL,
        "other": [],
    }


def test_captured_rules_in_order() -> None:
    rules = _captured()
    assert [(r["chain"], r["source"], r["in_interface"], r["comment"]) for r in rules] == [
        ("PREROUTING", "203.0.113.0/29", "vif+", "glidepath"),
        ("PREROUTING", "203.0.113.0/29", "vif+", None),  # the blog's rule, by hand
        ("PREROUTING", "198.51.100.8/29", "vif3", "glidepath net1"),  # quoted comment
        ("PREROUTING", "203.0.113.2/32", "br0", None),  # -s 203.0.113.2 gains its /32
        ("PREROUTING", None, None, None),
        ("PREROUTING", "203.0.113.0/29", "vif+", "glidepath"),  # a duplicate of the first
        ("OUTPUT", "203.0.113.0/29", None, "glidepath"),
    ]
    assert [(r["mark"], r["mask"]) for r in rules] == [
        (1, FULL),
        (1, FULL),
        (FULL, FULL),  # --set-mark 0xffffffff
        (7, FULL),
        (5, 0xFF),  # --set-xmark 0x5/0xff: not a plain set-mark
        (1, FULL),
        (FULL, FULL),  # --set-mark 4294967295 (decimal) prints as hex
    ]


def test_unmodelled_matches_are_kept_so_the_rule_is_not_ours() -> None:
    rule = _captured()[4]
    assert rule["other"] == ["-p", "tcp", "-m", "tcp", "--dport", "80"]
    desired = plans.desired_rule("PREROUTING", "203.0.113.0/29", "vif+", 1)
    assert plans.rule_key(rule) != plans.rule_key(desired)


def test_desired_rule_equals_its_parsed_form() -> None:
    desired = plans.desired_rule("PREROUTING", "203.0.113.0/29", "vif+", 1)
    rules = _captured()
    assert [plans.rule_key(r) == plans.rule_key(desired) for r in rules] == [
        True, False, False, False, False, True, False,
    ]  # fmt: skip


def test_negation_is_kept_verbatim() -> None:
    line = "-A PREROUTING ! -s 203.0.113.0/29 -i vif+ -j MARK --set-xmark 0x1/0xffffffff"
    rule = facts.parse_rule(line)
    assert rule["source"] is None
    assert rule["other"] == ["!", "-s", "203.0.113.0/29"]
    assert rule["in_interface"] == "vif+"


def test_other_tables_in_a_full_dump_are_ignored() -> None:
    dump = (
        "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -s 203.0.113.0/29 -j ACCEPT\nCOMMIT\n"
        + (DATA / "iptables_save_mangle_nft.txt").read_text()
        + "*nat\n-A POSTROUTING -j MASQUERADE\nCOMMIT\n"
    )
    assert facts.process(dump) == _captured()


def test_command_reads_only_the_mangle_table() -> None:
    assert facts.command() == ["iptables-save", "-t", "mangle"]
