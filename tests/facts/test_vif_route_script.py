"""The vif-route facts against real output: `stat` of the script directory, the script
and a missing path (captured in lab host `new`), the lab's own (blog-style) script, and
the owners' files as the fragments script prints them (run here, on files made here)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from providers.facts import vif_route_script as facts
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


def test_routes_of_a_script_glidepath_generated_before_the_owners_files() -> None:
    # The arms of the script that held the routes itself (what an older state left).
    content = (
        'case "$dev" in\n    eth-vm.1) ip=203.0.113.7 ;;\n    vif0) ip=203.0.113.2 ;;\n'
        "    vif10) ip=198.51.100.9 ;;\n    *)\n        exit 0\n        ;;\nesac\n"
    )
    assert facts.parse_routes(content) == {
        "eth-vm.1": "203.0.113.7",
        "vif0": "203.0.113.2",
        "vif10": "198.51.100.9",
    }


def test_arms_without_an_address_are_left_out() -> None:
    content = 'case "$1" in\n  vif0) : ;;\n  vif1) ip=203.0.113.999 ;;\n  *) exit 0 ;;\nesac\n'
    assert facts.parse_routes(content) == {}


# --- the owners' files ---------------------------------------------------------------


def _fragments(directory: Path) -> CommandResult:
    argv = facts.fragments_command(str(directory))
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    return CommandResult(tuple(argv), done.returncode, done.stdout, done.stderr)


def test_fragments_are_each_file_by_name_exactly(tmp_path: Path) -> None:
    directory = tmp_path / "vif-route.d"
    directory.mkdir()
    (directory / "glidepath.lab").write_text("vif0 203.0.113.2\nvif1 203.0.113.3\n")
    (directory / "glidepath.bench").write_text("")  # a stack without VMs holds it too
    (directory / "by hand").write_text("vif7 203.0.113.7")  # no final newline: kept so
    (directory / ".glidepath.lab.glidepath-0123456789ab").write_text("half")  # hidden
    (directory / "sub").mkdir()
    (directory / "-rf").write_text("x\n")
    assert facts.process_fragments(_fragments(directory)) == {
        "glidepath.lab": "vif0 203.0.113.2\nvif1 203.0.113.3\n",
        "glidepath.bench": "",
        "by hand": "vif7 203.0.113.7",
        "-rf": "x\n",
    }


def test_no_directory_is_no_fragments(tmp_path: Path) -> None:
    assert facts.process_fragments(_fragments(tmp_path / "vif-route.d")) == {}
    (tmp_path / "empty.d").mkdir()
    assert facts.process_fragments(_fragments(tmp_path / "empty.d")) == {}


def test_fragments_that_cannot_be_read_are_an_error(tmp_path: Path) -> None:
    failed = CommandResult(("sh",), 1, "", "cat: x: Input/output error\n")
    with pytest.raises(RuntimeError, match="Input/output error"):
        facts.process_fragments(failed)
    directory = tmp_path / "vif-route.d"
    directory.mkdir()
    (directory / "glidepath.lab").write_bytes(b"vif0\x00203.0.113.2\n")
    with pytest.raises(RuntimeError, match="NUL"):
        facts.process_fragments(_fragments(directory))


def test_a_fragment_reads_as_the_script_reads_it() -> None:
    content = (
        "vif0 203.0.113.2\n"
        "  vif1\t203.0.113.3  trailing words\n"
        "# vif2 203.0.113.4\n"  # a comment: '#' is no vif name
        "\n"
        "vif3\n"
        "vif4 203.0.113.999\n"
        "vif0 203.0.113.6\n"  # the script takes the first line for a vif
        "vif5 203.0.113.7"
    )
    assert facts.parse_fragment(content) == {
        "vif0": "203.0.113.2",
        "vif1": "203.0.113.3",
        "vif5": "203.0.113.7",
    }
