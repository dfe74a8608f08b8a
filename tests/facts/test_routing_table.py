"""rt_tables parsing, from the lab host's real file and a hand-edited variant."""

from __future__ import annotations

from pathlib import Path

import pytest

from providers.facts import routing_table as rt_tables

pytestmark = [pytest.mark.unit]

DATA = Path(__file__).parent / "data"


def test_debian_file_as_shipped_plus_the_lab_baseline_entry() -> None:
    # Captured with `cat /etc/iproute2/rt_tables` on the lab host `new` (Debian 12,
    # iproute2 6.1), after the lab's hand-migration baseline appended `201 vm-out`.
    entries = rt_tables.process((DATA / "rt_tables_debian.txt").read_text())
    assert [(e["id"], e["name"]) for e in entries] == [
        (255, "local"),
        (254, "main"),
        (253, "default"),
        (0, "unspec"),
        (201, "vm-out"),
    ]
    assert entries[-1]["line"] == 7
    assert rt_tables.names(entries)["vm-out"] == 201


def test_hand_edited_file_hex_ids_comments_blanks_and_junk() -> None:
    entries = rt_tables.process((DATA / "rt_tables_hand_edited.txt").read_text())
    pairs = [(e["id"], e["name"]) for e in entries]
    assert (202, "backup") in pairs  # 0xca, with a trailing comment
    assert (203, "vm-in") in pairs  # leading whitespace
    assert (1, "inr.ruhep") not in pairs  # commented out
    assert all(e["name"] not in ("not", "an") for e in entries)  # junk line skipped
    names = rt_tables.names(entries)
    # Two names for 201: iproute2 keeps the later line, so `vm-out` no longer resolves.
    assert names["vm-out2"] == 201
    assert "vm-out" not in names


def test_missing_file_leaves_the_builtin_names() -> None:
    assert rt_tables.process(None) == []
    assert rt_tables.names([]) == {"unspec": 0, "default": 253, "main": 254, "local": 255}
