"""`pulumi up` typed on the command line runs a Python program through the language host
(on this machine glidepath's stand-in, engine/langhost.py; README, Engine notes)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from engine import PROJECT_ROOT, engine_env

pytestmark = [pytest.mark.engine]

PROGRAM = """\
import pulumi
from tests.engine.sleeper import Sleeper

sleeper = Sleeper("nap", seconds=1, print_every=1)
pulumi.export("label", sleeper.label)
pulumi.export("config_value", pulumi.Config().require("greeting"))
"""


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


def test_pulumi_cli_runs_a_python_program(tmp_path: Path) -> None:
    project = tmp_path / "cliproject"
    project.mkdir()
    (project / "Pulumi.yaml").write_text(
        "name: cliproject\nruntime:\n  name: python\n  options:\n"
        f"    toolchain: pip\n    virtualenv: {PROJECT_ROOT / '.venv'}\n"
    )
    (project / "__main__.py").write_text(PROGRAM)
    stack = f"cli{tmp_path.name[-6:]}".replace("_", "")
    try:
        assert _pulumi(project, "stack", "init", stack).returncode == 0
        assert _pulumi(project, "config", "set", "greeting", "hi").returncode == 0
        up = _pulumi(project, "up", "--yes")
        assert up.returncode == 0, up.stdout + up.stderr
        assert "sleeper nap: 0s of 1s" in up.stdout
        outputs = json.loads(_pulumi(project, "stack", "output", "--json").stdout)
        assert outputs == {"label": "nap", "config_value": "hi"}
        preview = _pulumi(project, "preview", "--expect-no-changes")
        assert preview.returncode == 0, preview.stdout + preview.stderr
    finally:
        _pulumi(project, "destroy", "--yes")
        _pulumi(project, "stack", "rm", "--yes", stack)
