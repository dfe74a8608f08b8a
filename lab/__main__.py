"""Command line for the lab.

python -m lab up [--hosts N] | down | status [--json]
python -m lab exec HOST -- CMD...
python -m lab ssh HOST [CMD...]
python -m lab reboot HOST
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from lab import lifecycle
from lab import topology as t
from lab.proc import ENV, host_argv


def _hypervisor_arg(name: str) -> str:
    t.host_index(name)
    return name


def _hosts_arg(name: str) -> str:
    if name in (t.CORE, t.CLIENT):
        return name
    t.host_index(name)
    return name


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab", description="glidepath's namespace lab")
    sub = p.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("up", help="bring the lab up (idempotent)")
    u.add_argument(
        "--hosts", type=int, default=2, help=f"hypervisors, 2..{t.MAX_HOSTS} (default 2)"
    )
    sub.add_parser("down", help="remove everything the lab created")
    s = sub.add_parser("status", help="show what is up")
    s.add_argument("--json", action="store_true")
    e = sub.add_parser("exec", help="run a command inside a host: exec HOST -- CMD...")
    e.add_argument("host", type=_hosts_arg)
    e.add_argument("command", nargs=argparse.REMAINDER)
    sh = sub.add_parser("ssh", help="ssh into a host with the lab key and known_hosts")
    sh.add_argument("host")
    sh.add_argument("command", nargs=argparse.REMAINDER)
    r = sub.add_parser("reboot", help="cut a hypervisor's power and boot it again")
    r.add_argument("host", type=_hypervisor_arg)
    a = p.parse_args(argv)

    if a.cmd == "up":
        try:
            st = lifecycle.up(a.hosts)
        except lifecycle.LabError as err:
            print(f"lab up: {err}", file=sys.stderr)
            return 2
        print(f"lab up: {'created' if st['changed'] else 'already up'} in {st['seconds']} s")
        _print_status(st)
        return 0
    if a.cmd == "down":
        left = lifecycle.down()
        if left:
            print("lab down: leftovers:\n  " + "\n  ".join(left), file=sys.stderr)
            return 1
        print("lab down: clean")
        return 0
    if a.cmd == "status":
        st = lifecycle.status()
        if a.json:
            print(json.dumps(st, indent=2))
        else:
            _print_status(st)
        return 0 if st["up"] else 1
    if a.cmd == "exec":
        cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
        if not cmd:
            p.error("exec HOST -- CMD...")
        os.execvpe(  # noqa: S606 (an argv list that replaces this process)
            "nsenter", host_argv(a.host, cmd), {**os.environ, **ENV}
        )
    if a.cmd == "reboot":
        from lab import reboot

        try:
            off, booted = reboot.reboot(a.host)
        except lifecycle.LabError as err:
            print(f"lab reboot: {err}", file=sys.stderr)
            return 2
        print(booted.restore_output.rstrip())
        print(
            f"lab reboot: {a.host} off in {off.seconds} s ({off.killed} processes ended), "
            f"booted in {booted.seconds} s (sysctl.d: {', '.join(booted.sysctl_files) or '-'})"
        )
        return 0
    if a.cmd == "ssh":
        cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
        argv = lifecycle.ssh_argv(a.host, cmd, tty=not cmd and sys.stdin.isatty())
        os.execvp(argv[0], argv)  # noqa: S606
    return 2


def _print_status(st: dict[str, object]) -> None:
    if not st.get("hosts"):
        print("lab: down")
        return
    print(f"lab: {'up' if st['up'] else 'DEGRADED'}")
    hosts = st["hosts"]
    assert isinstance(hosts, dict)
    for name, h in hosts.items():
        vms = ",".join(h["vms"]) or "-"
        print(f"  {name:6} {h['address']:12} sshd={h['sshd']} libvirtd={h['libvirtd']} vms={vms}")
    core = st.get("core")
    if isinstance(core, dict):
        print(f"  core   {core['address']:12} sshd={core['sshd']} route: {core['route']}")
    print(f"  client {st.get('client')}   ssh: ssh -F {st.get('ssh_config')} old")
    problems = st.get("problems") or []
    assert isinstance(problems, list)
    for prob in problems:
        print(f"  problem: {prob}")


if __name__ == "__main__":
    sys.exit(main())
