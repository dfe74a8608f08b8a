"""The current value of one sysctl: `sysctl -n KEY`."""

from __future__ import annotations

from providers.transport import CommandResult


def command(key: str) -> list[str]:
    return ["sysctl", "-n", key]


def process(result: CommandResult) -> str | None:
    """'1\\n' -> '1'; a missing key (for example its interface is gone) -> None.

    Multi-value keys come tab-separated ('4096\\t131072\\t6291456'); we fold the
    whitespace so they compare equal to the canonical input '4096 131072 6291456'.
    """
    if not result.ok:
        if "cannot stat" in result.stderr or "No such file" in result.stderr:
            return None
        raise RuntimeError(f"sysctl -n failed: {result.stderr.strip()}")
    return " ".join(result.stdout.split())
