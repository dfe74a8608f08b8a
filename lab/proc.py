"""Running commands in the root namespace and inside lab namespaces.

Every command is an argv list; nothing goes through a shell.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from lab import topology as t

#: Environment for commands whose output we parse.
ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LC_ALL": "C",
    "HOME": "/root",
}


#: GLIDEPATH_LAB_TRACE=1 prints every command with its duration to stderr.
_TRACE = os.environ.get("GLIDEPATH_LAB_TRACE") == "1"


class CommandError(RuntimeError):
    """A command failed; carries the argv and its output."""

    def __init__(self, argv: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(
            f"command {self.argv} exited {returncode}: {stderr.strip() or stdout.strip()}"[:2000]
        )


def sh(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float = 60,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run argv in the root namespace; raise CommandError on failure if check."""
    t0 = time.monotonic()
    try:
        cp = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            env=dict(env or ENV),
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as e:
        raise CommandError(argv, -1, _text(e.stdout), f"timed out after {timeout} s") from e
    if _TRACE:
        print(
            f"lab: {time.monotonic() - t0:6.2f} s rc={cp.returncode} {list(argv)}", file=sys.stderr
        )
    if check and cp.returncode != 0:
        raise CommandError(argv, cp.returncode, cp.stdout, cp.stderr)
    return cp


def _text(b: bytes | str | None) -> str:
    if b is None:
        return ""
    return b if isinstance(b, str) else b.decode(errors="replace")


def is_hypervisor(host: str) -> bool:
    try:
        t.host_index(host)
    except ValueError:
        return False
    return True


def host_argv(host: str, argv: Sequence[str]) -> list[str]:
    """argv that runs `argv` inside `host` (core, client or a hypervisor).

    Hypervisors get their network, mount and UTS namespaces; core and client
    are network namespaces only.
    """
    if host in (t.CORE, t.CLIENT):
        return ["nsenter", f"--net=/run/netns/{host}", "--", *argv]
    h = t.hypervisor(host)
    return [
        "nsenter",
        f"--net={h.net_ns}",
        f"--mount={h.mnt_ns}",
        f"--uts={h.uts_ns}",
        "--",
        *argv,
    ]


def run(
    host: str,
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float = 60,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run argv inside a lab host and return its CompletedProcess (text output).

    Raises CommandError if check and the command fails or times out.
    """
    return sh(host_argv(host, argv), check=check, timeout=timeout, input=input)


def popen(host: str, argv: Sequence[str], **kwargs: object) -> subprocess.Popen[str]:
    """Start argv inside a lab host in the background (caller waits/kills it by PID)."""
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    kwargs.setdefault("env", dict(ENV))
    # nsenter without --fork execs the command, so the Popen pid is the command's pid.
    return subprocess.Popen(host_argv(host, argv), text=True, **kwargs)  # type: ignore[call-overload]


def write_file(path: Path, text: str, mode: int = 0o644) -> None:
    """Write atomically-enough for config files: write then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
