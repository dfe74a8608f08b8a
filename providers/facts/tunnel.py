"""Facts of one `ssh -w` tunnel: its keeper process (found by PID) and each end's tunN.

- the pid file (read with `SshSession.read_file`): `process_pid`;
- `cat /proc/<pid>/cmdline`: the keeper's exact argv (NUL-separated), `process_cmdline`;
- `ps -ww -o pid=,ppid=,args= --sid <pid>`: the processes of the keeper's session (it is a
  session leader), where its ssh child is found: `process_members`;
- `ip -d -j addr show dev tunN` on each end: `process_device` (absent device: None).
"""

from __future__ import annotations

import json
from typing import Any, NotRequired, TypedDict

from providers.transport import CommandResult


class Process(TypedDict):
    """{"pid": 4242, "ppid": 4200, "args": "ssh -T -o BatchMode=yes ... -w 5:5 root@..."}"""

    pid: int
    ppid: int
    args: str


class Keeper(TypedDict):
    """{"pid": 4200, "cmdline": ["/bin/bash", "/usr/local/lib/glidepath/tunnel-keeper",
    "v1", "5", ...], "members": [Process, ...]}; pid None: no pid file; cmdline None: no
    such process (or a zombie)."""

    pid: int | None
    cmdline: list[str] | None
    members: list[Process]


class Device(TypedDict):
    """{"ifname": "tun5", "up": true, "addresses": ["198.18.105.1/24"], "admin_up": true,
    "persistent": true, "alias": "glidepath tunnel 198.18.1.2<->198.18.2.2"}

    up: administratively up AND with carrier (an ssh holds it); admin_up: UP alone;
    persistent: created with `ip tuntap add` (it outlives the ssh that opens it)."""

    ifname: str
    up: bool
    addresses: list[str]
    admin_up: bool
    persistent: bool
    alias: str | None
    mtu: NotRequired[int]


def process_pid(text: str | None) -> int | None:
    """'4200\\n' -> 4200; no file, or not a PID -> None."""
    if text is None:
        return None
    word = text.strip()
    return int(word) if word.isdigit() and 1 < int(word) < 2**22 else None


def cmdline_command(pid: int) -> list[str]:
    return ["cat", "--", f"/proc/{pid}/cmdline"]


def process_cmdline(result: CommandResult) -> list[str] | None:
    """b'/bin/bash\\0/usr/local/...\\0v1\\0' -> ['/bin/bash', '/usr/local/...', 'v1'].

    A process that is gone fails with "No such file"; a zombie has an empty cmdline.
    """
    if not result.ok or not result.stdout:
        return None
    return result.stdout.rstrip("\x00").split("\x00")


def members_command(pid: int) -> list[str]:
    return ["ps", "-ww", "-o", "pid=,ppid=,args=", "--sid", str(pid)]


def process_members(result: CommandResult) -> list[Process]:
    """`ps` lines '  4242    4200 ssh -T ...' -> Process dicts; an empty session exits 1."""
    members: list[Process] = []
    for line in result.stdout.splitlines():
        words = line.split(None, 2)
        if len(words) < 2 or not (words[0].isdigit() and words[1].isdigit()):
            continue
        members.append(
            {
                "pid": int(words[0]),
                "ppid": int(words[1]),
                "args": words[2] if len(words) > 2 else "",
            }
        )
    return members


def device_command(dev: str) -> list[str]:
    return ["ip", "-d", "-j", "addr", "show", "dev", dev]


def process_device(result: CommandResult) -> Device | None:
    """`ip -j addr show dev tun5` -> Device; 'Device "tun5" does not exist.' -> None.

    `up` needs both UP (set by us or the keeper) and LOWER_UP (a tun device has carrier
    only while ssh/sshd holds it open).
    """
    if not result.ok:
        if "does not exist" in result.stderr:
            return None
        raise RuntimeError(f"ip addr show failed: {result.stderr.strip()}")
    links: list[dict[str, Any]] = json.loads(result.stdout or "[]")
    if not links:
        return None
    link = links[0]
    flags = link.get("flags", [])
    info = (link.get("linkinfo") or {}).get("info_data") or {}
    return {
        "ifname": str(link.get("ifname", "")),
        "up": "UP" in flags and "LOWER_UP" in flags,
        "addresses": [
            f"{a['local']}/{a['prefixlen']}"
            for a in link.get("addr_info", [])
            if a.get("family") in ("inet", "inet6")
            and a.get("scope") != "link"  # the kernel's own fe80:: address is not ours
        ],
        "admin_up": "UP" in flags,
        "persistent": bool(info.get("persist", False)),
        "alias": link.get("ifalias") or None,
        "mtu": int(link.get("mtu", 0)),
    }
