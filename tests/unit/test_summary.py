"""The closing summary of `pulumi up` (components/summary.py)."""

from __future__ import annotations

import pytest

from components.summary import summary

pytestmark = [pytest.mark.unit]


def test_a_move_and_its_cutover_read_as_one_line_each() -> None:
    lines = summary(
        {
            "blog": {
                "from": "old", "to": "new", "seconds": 2.34, "downtime_ms": 63.0,
                "bytes": 75_497_472, "at": "2026-11-26T01:20:03Z",
            },
            "idle": None,
        },
        {
            "net0": {
                "from": "old", "to": "new", "switch_ms": 6, "first_packet_ms": 42.0,
                "egress_switched_ms": 57, "at": "2026-11-26T01:20:04Z",
            }
        },
    )  # fmt: skip
    # Numbers come back from the engine as floats; the summary prints whole ms.
    assert lines == {
        "blog": "moved old -> new at 2026-11-26 01:20:03 UTC: 2.3 s, QEMU downtime 63 ms, "
        "72 MiB copied",
        "idle": "not moved yet",
        "net0": "cut over old -> new at 2026-11-26 01:20:04 UTC: first direct packet 42 ms "
        "after the switch, egress switched 15 ms later",
    }


def test_a_cutover_without_a_packet_says_so() -> None:
    record = {"from": "old", "to": "new", "first_packet_ms": None, "egress_switched_ms": 60_010}
    assert summary({}, {"net0": record}) == {
        "net0": "cut over old -> new: no direct packet seen before the timeout"
    }
    assert summary({}, {"net0": None}) == {"net0": "no cutover yet"}
