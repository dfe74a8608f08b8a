"""Data-driven planner tests, one JSON file per case (the pyinfra pattern).

`cases/<module>.<function>/<case>.json` holds the planner's keyword arguments (desired
state and facts) and what must come out: `commands` (exact argv lists, in order; [] for
nothing) and `writes` (file writes {path, content, mode}; default none) with an optional
`reason` substring, or `error` (a substring of the PlanError).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest

from providers.plans import Plan, PlanError

CASES = sorted((Path(__file__).parent / "cases").glob("*.*/*.json"))

pytestmark = [pytest.mark.plans]


def _load(path: Path) -> dict[str, Any]:
    case: dict[str, Any] = json.loads(path.read_text())
    if ("commands" in case) == ("error" in case):
        raise ValueError(f"{path}: a case expects either commands or error")
    return case


@pytest.mark.parametrize("path", CASES, ids=[f"{p.parent.name}/{p.stem}" for p in CASES])
def test_plan(path: Path) -> None:
    module_name, function_name = path.parent.name.rsplit(".", 1)
    planner = getattr(importlib.import_module(f"providers.plans.{module_name}"), function_name)
    case = _load(path)
    if "error" in case:
        with pytest.raises(PlanError, match=case["error"]):
            planner(**case["args"])
        return
    plan = planner(**case["args"])
    assert isinstance(plan, Plan)
    assert [list(argv) for argv in plan.commands] == case["commands"]
    writes = [{"path": w.path, "content": w.content, "mode": w.mode} for w in plan.writes]
    assert writes == case.get("writes", [])
    if "reason" in case:
        assert case["reason"] in plan.reason


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 30, "issue 4 asks for at least 30 planner cases"
