"""`pulumi up` typed on the command line runs a Python program through the real Python
language host: the Go-built `pulumi-language-python` that bootstrap builds from
../shared/vendor (or takes from a normal Pulumi install), not a script (README, Engine
notes). The program's `pulumi_command` resource runs on the command provider built the
same way."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from engine import PROJECT_ROOT, TOOLS_BIN, engine_env, read_versions

pytestmark = [pytest.mark.engine]

PROGRAM = """\
import pulumi
from pulumi_command import local
from tests.engine.sleeper import Sleeper

sleeper = Sleeper("nap", seconds=1, print_every=1)
greet = local.Command("greet", create="echo hello from the command provider")
pulumi.export("label", sleeper.label)
pulumi.export("config_value", pulumi.Config().require("greeting"))
pulumi.export("greet", greet.stdout)
"""

ELF_MAGIC = b"\x7fELF"


def _pulumi(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["pulumi", "--non-interactive", *args],
        cwd=project,
        env=engine_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    project = tmp_path / "cliproject"
    project.mkdir()
    (project / "Pulumi.yaml").write_text(
        "name: cliproject\nruntime:\n  name: python\n  options:\n"
        f"    toolchain: pip\n    virtualenv: {PROJECT_ROOT / '.venv'}\n"
    )
    (project / "__main__.py").write_text(PROGRAM)
    return project


def test_the_plugins_are_go_binaries_of_the_pinned_versions(project: Path) -> None:
    versions = read_versions()
    for name in ("pulumi", "pulumi-language-python"):
        head = (TOOLS_BIN / name).read_bytes()[:4]  # through a symlink to a PATH install
        assert head == ELF_MAGIC, f"{name} is not a Go binary (starts with {head!r})"
    assert not (TOOLS_BIN / "pulumi-resource-command").exists()  # no ambient copy on PATH
    listed = _pulumi(project, "plugin", "ls", "--json")
    assert listed.returncode == 0, listed.stderr
    (command,) = [p for p in json.loads(listed.stdout) if p["name"] == "command"]
    assert (command["kind"], command["version"]) == (
        "resource",
        versions["PULUMI_COMMAND_VERSION"].lstrip("v"),
    )
    home = Path(engine_env()["PULUMI_HOME"])
    binary = (
        home / "plugins" / f"resource-command-v{command['version']}" / "pulumi-resource-command"
    )
    assert binary.read_bytes()[:4] == ELF_MAGIC
    host = subprocess.run(
        [str(TOOLS_BIN / "pulumi-language-python"), "-version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert host.stdout.strip() == versions["PULUMI_CLI_VERSION"]


def test_pulumi_about_names_the_real_language_host(project: Path) -> None:
    about = _pulumi(project, "about", "--json")
    assert about.returncode == 0, about.stdout + about.stderr
    report = json.loads(about.stdout)
    plugins = {(p["kind"], p["name"]): p["version"] for p in report["plugins"]}
    versions = read_versions()
    assert plugins[("language", "python")] == versions["PULUMI_CLI_VERSION"].lstrip("v")
    assert plugins[("resource", "command")] == versions["PULUMI_COMMAND_VERSION"].lstrip("v")
    # Only the real host answers `About` with the program's runtime and toolchain.
    assert report["runtime"]["language"] == "python"
    assert report["runtime"]["toolchain"] == "Pip"
    assert report["runtime"]["executable"] == str(PROJECT_ROOT / ".venv" / "bin" / "python")


def test_pulumi_cli_runs_a_python_program(project: Path, tmp_path: Path) -> None:
    stack = f"cli{tmp_path.name[-6:]}".replace("_", "")
    try:
        assert _pulumi(project, "stack", "init", stack).returncode == 0
        assert _pulumi(project, "config", "set", "greeting", "hi").returncode == 0
        up = _pulumi(project, "up", "--yes")
        assert up.returncode == 0, up.stdout + up.stderr
        assert "from $PATH" not in up.stdout + up.stderr  # no ambient-plugin warning
        assert "sleeper nap: 0s of 1s" in up.stdout
        outputs = json.loads(_pulumi(project, "stack", "output", "--json").stdout)
        assert outputs == {
            "label": "nap",
            "config_value": "hi",
            "greet": "hello from the command provider",
        }
        preview = _pulumi(project, "preview", "--expect-no-changes")
        assert preview.returncode == 0, preview.stdout + preview.stderr
    finally:
        _pulumi(project, "destroy", "--yes")
        _pulumi(project, "stack", "rm", "--yes", stack)
