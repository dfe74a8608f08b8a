"""The offline Pulumi engine settings, in one place.

Make targets, tests and benchmarks all take their environment from `engine_env()`
(the Makefile through `python -m engine shell`), so a `pulumi` run anywhere in the
project uses the same CLI, backend, passphrase and offline switches.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TOOLS_BIN = PROJECT_ROOT / ".tools" / "bin"
STATE_DIR = PROJECT_ROOT / ".state"
VENV_BIN = PROJECT_ROOT / ".venv" / "bin"

# Lab stacks only: a fixed passphrase is fine for throwaway state on this machine.
# A real deployment sets PULUMI_CONFIG_PASSPHRASE (or _FILE) itself, and that wins.
LAB_PASSPHRASE = "glidepath-lab"  # noqa: S105 (lab-only, documented)
NO_BYTECODE = "PYTHONDONTWRITEBYTECODE"


def read_versions() -> dict[str, str]:
    """The pinned versions from scripts/versions.env (KEY=VALUE lines)."""
    versions: dict[str, str] = {}
    for line in (PROJECT_ROOT / "scripts" / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            versions[key.strip()] = value.strip()
    return versions


def engine_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for running the Pulumi CLI offline against the local file backend."""
    env = dict(os.environ if base is None else base)
    STATE_DIR.mkdir(exist_ok=True)
    env["PATH"] = os.pathsep.join([str(TOOLS_BIN), str(VENV_BIN), env.get("PATH", "")])
    env.setdefault("PULUMI_BACKEND_URL", f"file://{STATE_DIR}")
    if "PULUMI_CONFIG_PASSPHRASE_FILE" not in env:
        env.setdefault("PULUMI_CONFIG_PASSPHRASE", LAB_PASSPHRASE)
    # Dynamic providers are pickled by reference: the provider process imports
    # `providers.*`, whatever folder the program runs from.
    paths = [str(PROJECT_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PULUMI_SKIP_UPDATE_CHECK"] = "true"
    env["PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION"] = "true"
    # Keep the CLI's plugin cache and credentials inside the checkout, not in ~/.pulumi.
    env.setdefault("PULUMI_HOME", str(PROJECT_ROOT / ".tools" / "pulumi-home"))
    # Every `pulumi` run starts the program and the provider as new Python processes;
    # without cached bytecode each compiles glidepath's ~70 modules again (0.12 s per
    # process, measured by bench/fixed_cost.py). Some machines set this variable globally.
    env.pop(NO_BYTECODE, None)
    return env


def shell_exports() -> str:
    """`export K=V` lines for the settings that differ from the caller's environment."""
    import shlex

    current = dict(os.environ)
    wanted = engine_env(current)
    exports = [
        f"export {key}={shlex.quote(value)}"
        for key, value in sorted(wanted.items())
        if current.get(key) != value
    ]
    return "\n".join([*exports, *(f"unset {key}" for key in sorted(set(current) - set(wanted)))])
