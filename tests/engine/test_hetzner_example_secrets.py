"""The example stack's secrets decrypt with the real CLI (tests/unit/test_hetzner_example_
stack.py checks everything else without the engine).

The stack file's `secure:` values were made by `pulumi config set --secret` with the
offline engine's passphrase; this opens a copy of the file in a throwaway backend, as a
user who cloned the repository would, and reads them back.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from engine import LAB_PASSPHRASE, PROJECT_ROOT, engine_env

pytestmark = [pytest.mark.engine]

STACK = "hetzner-example"
STACK_FILE = PROJECT_ROOT / "stacks" / f"Pulumi.{STACK}.yaml"


def _pulumi(project: Path, backend: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = engine_env()
    env.pop("PULUMI_CONFIG_PASSPHRASE_FILE", None)
    env.update(PULUMI_BACKEND_URL=f"file://{backend}", PULUMI_CONFIG_PASSPHRASE=LAB_PASSPHRASE)
    return subprocess.run(
        ["pulumi", "--non-interactive", *args, "--stack", STACK],
        cwd=project,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_secrets_decrypt_with_the_engines_passphrase(tmp_path: Path) -> None:
    project, backend = tmp_path / "project", tmp_path / "backend"
    (project / "stacks").mkdir(parents=True)
    backend.mkdir()
    shutil.copy(PROJECT_ROOT / "Pulumi.yaml", project / "Pulumi.yaml")
    shutil.copy(STACK_FILE, project / "stacks" / STACK_FILE.name)
    init = _pulumi(project, backend, "stack", "init")
    assert init.returncode == 0, init.stderr
    # The existing salt was kept: the stack file is as committed.
    assert (project / "stacks" / STACK_FILE.name).read_text() == STACK_FILE.read_text()

    shown = _pulumi(project, backend, "config", "--show-secrets", "--json")
    assert shown.returncode == 0, shown.stderr
    config: dict[str, Any] = json.loads(shown.stdout)
    for key in ("glidepath:ssh", "glidepath:robot"):
        assert config[key]["secret"] is True, key
    ssh = json.loads(config["glidepath:ssh"]["value"])
    robot = json.loads(config["glidepath:robot"]["value"])
    placeholders = [ssh["private_key"], robot["user"], robot["password"]]
    assert all(value.startswith("REPLACE-ME") for value in placeholders), placeholders

    hidden = _pulumi(project, backend, "config", "--json")
    assert hidden.returncode == 0, hidden.stderr
    assert not any(value in hidden.stdout + hidden.stderr for value in placeholders)
