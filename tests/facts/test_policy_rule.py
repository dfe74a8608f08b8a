"""`ip -j rule show` parsing, from output captured on the lab host `new` (iproute2 6.1)
with these rules added by hand (and removed again):

    ip rule add priority 31037 fwmark 0x25 table 201        # 201 is `vm-out` there
    ip rule add priority 31038 fwmark 0x26/0xff table 237
    ip rule add priority 31039 from 203.0.113.0/29 iif br0 table 237
    ip rule add priority 31039 fwmark 7 table 237
    ip rule add priority 31040 fwmark 9 unreachable
"""

from __future__ import annotations

from pathlib import Path

import pytest

from providers.facts import policy_rule as facts

pytestmark = [pytest.mark.unit]

DATA = Path(__file__).parent / "data"


def _load(name: str, tables: dict[str, int] | None = None) -> list[facts.Rule]:
    return facts.process((DATA / name).read_text(), tables)


def test_numeric_output_gives_table_ids_and_integer_marks() -> None:
    rules = {r["priority"]: r for r in _load("ip_rule_show_numeric.json")}
    assert rules[31037] == {
        "priority": 31037,
        "fwmark": 0x25,
        "fwmask": None,
        "table": 201,
        "other": {},
    }
    assert rules[32766]["table"] == 254
    assert rules[0]["table"] == 255


def test_output_by_name_resolves_through_rt_tables() -> None:
    # Without -N iproute2 prints `vm-out` and `main`; with the host's names both become
    # the ids that the numeric output has, so the two parse the same.
    by_name = _load("ip_rule_show_names.json", {"vm-out": 201})
    numeric = _load("ip_rule_show_numeric.json")
    assert [r for r in by_name if "action" not in r["other"]] == [
        r for r in numeric if "action" not in r["other"]
    ]


def test_unknown_names_are_kept_as_text() -> None:
    rules = {r["priority"]: r for r in _load("ip_rule_show_names.json")}
    assert rules[31037]["table"] == "vm-out"
    assert rules[32767]["table"] == 253  # built in


def test_mask_other_selectors_and_actions_are_kept_apart() -> None:
    rules = _load("ip_rule_show_numeric.json")
    masked = next(r for r in rules if r["priority"] == 31038)
    assert (masked["fwmark"], masked["fwmask"]) == (0x26, 0xFF)
    shared = [r for r in rules if r["priority"] == 31039]
    assert shared[0]["other"] == {"src": "203.0.113.0/29", "iif": "br0"}
    assert shared[0]["fwmark"] is None
    assert shared[1]["other"] == {} and shared[1]["fwmark"] == 7
    unreachable = next(r for r in rules if r["priority"] == 31040)
    assert unreachable["table"] is None and unreachable["other"] == {"action": "7"}


def test_filtered_by_priority_and_absent() -> None:
    assert [r["priority"] for r in _load("ip_rule_show_priority_31039.json")] == [31039, 31039]
    assert _load("ip_rule_show_priority_absent.json") == []


def test_command_asks_for_numeric_json() -> None:
    assert facts.command(100) == ["ip", "-4", "-j", "-N", "rule", "show", "priority", "100"]
