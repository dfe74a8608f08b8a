"""The vif-route facts against real output captured in lab host `new`: `stat` of the
script directory, the script and a missing path, and the lab's own (blog-style) script."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from providers.facts import vif_route_script as facts
from providers.plans import vif_route_script as plans
from providers.transport import CommandResult

pytestmark = [pytest.mark.unit]

DATA = Path(__file__).parent / "data"


def _stat_result() -> CommandResult:
    captured = json.loads((DATA / "stat_vif_route.json").read_text())
    argv = facts.stat_command(
        "/etc/libvirt/scripts", "/etc/libvirt/scripts/vif-route", "/etc/libvirt/scripts/missing"
    )
    return CommandResult(
        tuple(argv), captured["exit_status"], captured["stdout"], captured["stderr"]
    )


def test_stat_lists_existing_paths_and_leaves_out_missing_ones() -> None:
    assert facts.process_stat(_stat_result()) == {
        "/etc/libvirt/scripts": {"mode": "755", "kind": "directory"},
        "/etc/libvirt/scripts/vif-route": {"mode": "755", "kind": "regular file"},
    }


def test_stat_other_errors_are_raised() -> None:
    result = CommandResult(("stat",), 1, "", "stat: cannot statx '/x': Permission denied\n")
    with pytest.raises(RuntimeError, match="Permission denied"):
        facts.process_stat(result)


def test_stat_command_is_argv_with_end_of_options() -> None:
    assert facts.stat_command("/a", "-b") == ["stat", "--printf=%a\\t%F\\t%n\\n", "--", "/a", "-b"]


def test_routes_of_the_blog_style_lab_script() -> None:
    content = (DATA / "vif_route_lab_script.sh").read_text()
    assert facts.parse_routes(content) == {
        "vif0": "203.0.113.2",
        "vif1": "203.0.113.3",
        "vif2": "203.0.113.4",
        "vif3": "203.0.113.5",
        "vif4": "203.0.113.6",
        "vif5": "203.0.113.7",
    }


def test_routes_of_a_generated_script_round_trip() -> None:
    routes = {"vif0": "203.0.113.2", "vif10": "198.51.100.9", "eth-vm.1": "203.0.113.7"}
    content = plans.render("/etc/libvirt/scripts/vif-route", routes)
    assert facts.parse_routes(content) == routes


def test_arms_without_an_address_are_left_out() -> None:
    content = 'case "$1" in\n  vif0) : ;;\n  vif1) ip=203.0.113.999 ;;\n  *) exit 0 ;;\nesac\n'
    assert facts.parse_routes(content) == {}
