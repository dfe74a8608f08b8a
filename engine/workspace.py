"""Automation API entry points with the offline settings: tests, benchmarks and the
demo open stacks through here, so they all drive the same built CLI the same way."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pulumi import automation as auto

from engine import PROJECT_ROOT, TOOLS_BIN, engine_env


def pulumi_command() -> auto.PulumiCommand:
    # root/bin/pulumi is the CLI built by scripts/bootstrap.sh; never call install().
    return auto.PulumiCommand(root=str(TOOLS_BIN.parent))


def _options(work_dir: Path, **extra: Any) -> auto.LocalWorkspaceOptions:
    env = {k: v for k, v in engine_env().items() if k.startswith(("PULUMI_", "PATH", "PYTHON"))}
    return auto.LocalWorkspaceOptions(
        work_dir=str(work_dir), pulumi_command=pulumi_command(), env_vars=env, **extra
    )


def local_stack(stack_name: str, work_dir: Path = PROJECT_ROOT) -> auto.Stack:
    """A stack of the project in work_dir (default: glidepath itself), created if new."""
    return auto.create_or_select_stack(
        stack_name=stack_name, work_dir=str(work_dir), opts=_options(work_dir)
    )


def inline_stack(
    stack_name: str, project_name: str, program: Callable[[], None], work_dir: Path
) -> auto.Stack:
    """A stack whose program runs in this process (used where a test needs its own program)."""
    settings = auto.ProjectSettings(
        name=project_name,
        runtime=auto.ProjectRuntimeInfo(
            name="python", options={"toolchain": "pip", "virtualenv": str(PROJECT_ROOT / ".venv")}
        ),
    )
    return auto.create_or_select_stack(
        stack_name=stack_name,
        project_name=project_name,
        program=program,
        opts=_options(work_dir, project_settings=settings),
    )


def project_stack(stack_name: str) -> auto.Stack:
    """A stack of glidepath itself (Pulumi.yaml, __main__.py, stacks/), run like `pulumi up`."""
    return local_stack(stack_name, PROJECT_ROOT)
