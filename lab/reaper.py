"""A lab host's reaper: runs a daemonizing command (libvirtd -d) below a child subreaper
and reaps every process it leaves behind, as a host's init does.

This machine's PID 1 reaps orphans only every 1.5-1.8 s (measured with a re-parented
`sleep`). A QEMU that libvirt stops stays a zombie until then, and libvirt waits for it
(virProcessKillPainfully polls kill(pid, 0), which a zombie passes): every migration's
Confirm phase took 1.2-1.8 s longer than on a host whose init reaps at once.

    python lab/reaper.py COMMAND [ARG...]

Returns once COMMAND has exited (with its status); the reaper lives on in the
background until it has no children left. Standalone: no imports from the repository.
"""

from __future__ import annotations

import ctypes
import os
import sys

PR_SET_CHILD_SUBREAPER = 36


def _reap_forever() -> None:
    while True:
        try:
            os.wait()
        except ChildProcessError:
            return  # nothing left below us
        except InterruptedError:
            continue


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: reaper.py COMMAND [ARG...]", file=sys.stderr)
        return 2
    status_read, status_write = os.pipe()
    if os.fork() > 0:
        # The caller's process: wait for the command's exit status, then return it.
        os.close(status_write)
        with os.fdopen(status_read) as status:
            text = status.read().strip()
        return int(text) if text.lstrip("-").isdigit() else 1
    # The reaper: a session of its own, detached from the caller's output pipes so that
    # whoever waits for the caller's end of them is not kept waiting by us.
    os.close(status_read)
    os.setsid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        os.write(status_write, b"1\n")
        return 1
    command = os.fork()
    if command == 0:
        os.close(status_write)
        try:
            os.execvp(argv[0], argv)  # noqa: S606 (argv as given, no shell)
        except OSError as err:
            print(f"reaper: {argv[0]}: {err}", file=sys.stderr)
        os._exit(127)
    _pid, wait_status = os.waitpid(command, 0)
    os.write(status_write, f"{os.waitstatus_to_exitcode(wait_status)}\n".encode())
    os.close(status_write)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    _reap_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
