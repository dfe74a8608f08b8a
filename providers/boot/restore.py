#!/usr/bin/python3
"""glidepath's boot restore: puts back, at a host's boot, what glidepath applied there.

Installed by glidepath on every host it touches as /usr/local/lib/glidepath/boot-restore
(this file, byte for byte: `providers.boot.persist.restorer_script`). Standalone: Python 3
standard library only, no import from the repository, because it runs on the hypervisor.

Each resource that applies a runtime artifact (an `ip rule`, an `ip route`, a mangle MARK,
a persistent tunN, a tunnel keeper) also writes its record, one JSON file per artifact,
to /etc/glidepath/boot.d/<kind>-<name>.json, and its delete removes that file. At boot
this program reads every record and applies it, idempotently: what is in place already
is left as it is, so a second run (or a run on a host that did not reboot) changes
nothing. Kinds are applied in a fixed order: tunnel devices first (routes go through
them), then rules, routes, marks, and last the tunnel keepers.

    boot-restore restore [--boot-dir DIR]   apply every record (the boot step)
    boot-restore keeper NAME                exec the keeper of record tunnel-NAME (the
                                            systemd unit glidepath-tunnel@NAME runs this)

On a host with systemd a oneshot unit (glidepath-restore.service) runs `restore` before
libvirt starts its guests, and each keeper is a unit of its own with Restart=always, so
`restore` leaves keepers to systemd. Without systemd (the lab), `restore` starts each
keeper detached (`setsid -f`), unless one of ours runs already.

The pure part: `steps(records)` -> what to check and run for each record, in order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from typing import Any, NamedTuple

BOOT_DIR = "/etc/glidepath/boot.d"
KEEPER = "/usr/local/lib/glidepath/tunnel-keeper"
RUN_DIR = "/run/glidepath"
#: How kinds are ordered at boot: a route via a tunnel needs its device first.
ORDER = ("tundev", "rule", "route", "mark", "keeper")
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}

Argv = tuple[str, ...]


class Step(NamedTuple):
    """Run `commands` unless `check` succeeds (exit status 0: already in place)."""

    what: str
    check: Argv | None
    commands: tuple[Argv, ...]


class RecordError(ValueError):
    """A record that does not say what its kind needs."""


def _route_spec(record: dict[str, Any]) -> list[str]:
    argv = [str(record["dst"])]
    if record.get("via") is not None:
        argv += ["via", str(record["via"])]
    if record.get("dev") is not None:
        argv += ["dev", str(record["dev"])]
    return [*argv, "table", str(int(record["table_id"])), "metric", str(int(record["metric"]))]


def _mark_spec(record: dict[str, Any]) -> list[str]:
    return [
        str(record["chain"]),
        "-s", str(record["source"]),
        "-i", str(record["in_interface"]),
        "-m", "comment", "--comment", str(record["comment"]),
        "-j", "MARK", "--set-mark", str(int(record["mark"])),
    ]  # fmt: skip


def keeper_argv(record: dict[str, Any]) -> Argv:
    """The keeper's argv (script and parameters) as the Tunnel resource starts it."""
    args = [str(a) for a in record["args"]]
    if not args:
        raise RecordError("keeper: no args")
    return (KEEPER, *args)


def step(record: dict[str, Any]) -> Step:
    """What to check and run for one record (pure)."""
    kind = record.get("kind")
    try:
        if kind == "tundev":
            dev = str(record["dev"])
            return Step(
                f"{dev} {record['address']}",
                None,
                (
                    # `ip tuntap add` of an existing persistent device fails: checked by
                    # the runner (`_device_alias`), so only the missing one is added, and
                    # one that is not ours is left alone.
                    ("ip", "link", "set", "dev", dev, "alias", str(record["alias"])),
                    ("ip", "link", "set", "dev", dev, "mtu", str(int(record["mtu"]))),
                    ("ip", "addr", "replace", str(record["address"]), "dev", dev),
                    ("ip", "link", "set", "dev", dev, "up"),
                ),
            )
        if kind == "rule":
            sel = [
                "priority", str(int(record["priority"])),
                "fwmark", hex(int(record["fwmark"])),
                "table", str(int(record["table_id"])),
            ]  # fmt: skip
            return Step(
                f"rule {' '.join(sel)}",
                None,  # `ip rule` has no check: the runner compares `ip -j rule` (`_has_rule`)
                (("ip", "-4", "rule", "add", *sel),),
            )
        if kind == "route":
            spec = _route_spec(record)
            # replace is idempotent: the same route again changes nothing.
            return Step(f"route {' '.join(spec)}", None, (("ip", "-4", "route", "replace", *spec),))
        if kind == "mark":
            spec = _mark_spec(record)
            return Step(
                f"mangle {' '.join(spec)}",
                ("iptables", "-w", "-t", "mangle", "-C", *spec),
                (("iptables", "-w", "-t", "mangle", "-A", *spec),),
            )
        if kind == "keeper":
            return Step(f"keeper {record['name']}", None, (("setsid", "-f", *keeper_argv(record)),))
    except (KeyError, TypeError, ValueError) as err:
        raise RecordError(f"{kind}: {err!r}") from err
    raise RecordError(f"unknown kind {kind!r}")


def ordered(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records in boot order (ORDER), then by name, so a run is reproducible."""
    rank = {kind: i for i, kind in enumerate(ORDER)}
    return sorted(records, key=lambda r: (rank.get(str(r.get("kind")), len(ORDER)), r["name"]))


def steps(records: Sequence[dict[str, Any]]) -> list[Step]:
    return [step(r) for r in ordered(records)]


def has_rule(rules: Sequence[dict[str, Any]], record: dict[str, Any]) -> bool:
    """`ip -j -4 rule show` holds exactly this rule (pure; fwmark as iproute2 prints it)."""
    for rule in rules:
        mark = rule.get("fwmark")
        if (
            rule.get("priority") == int(record["priority"])
            and mark is not None
            and int(str(mark), 0) == int(record["fwmark"])
            and rule.get("fwmask") is None
            and str(rule.get("table")) == str(int(record["table_id"]))
        ):
            return True
    return False


def keeper_running(cmdline: Sequence[str] | None, record: dict[str, Any]) -> bool:
    """A pid file's process is this record's keeper (bash runs the script: argv[1])."""
    if not cmdline:
        return False
    want = list(keeper_argv(record))
    return list(cmdline[-len(want) :]) == want and KEEPER in cmdline[:2]


# --- the runner (not pure) -------------------------------------------------------------


def load(boot_dir: str) -> list[dict[str, Any]]:
    records = []
    try:
        names = sorted(os.listdir(boot_dir))
    except FileNotFoundError:
        return []
    for name in names:
        if name.startswith(".") or not name.endswith(".json"):  # a write in progress
            continue
        with open(os.path.join(boot_dir, name)) as f:
            record = json.load(f)
        record["name"] = name.removesuffix(".json")
        records.append(record)
    return records


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), capture_output=True, text=True, env=ENV, timeout=30, check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _systemd() -> bool:
    return os.path.isdir("/run/systemd/system")


def _cmdline(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return None


def _keeper_pid(record: dict[str, Any]) -> int | None:
    try:
        with open(f"{RUN_DIR}/{record['name'].removeprefix('keeper-')}.pid") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _device_alias(dev: str) -> str | None:
    """The device's alias ("" without one), None when there is no such device."""
    shown = _run(["ip", "-j", "link", "show", "dev", dev])
    if shown.returncode != 0:
        return None
    links = json.loads(shown.stdout or "[]")
    return str(links[0].get("ifalias", "")) if links else None


def _in_place(record: dict[str, Any], s: Step) -> bool:
    kind = record["kind"]
    if kind == "rule":
        shown = _run(["ip", "-j", "-4", "rule", "show", "priority", str(int(record["priority"]))])
        return shown.returncode == 0 and has_rule(json.loads(shown.stdout or "[]"), record)
    if kind == "keeper":
        if _systemd():
            return True  # its unit keeps it (Restart=always)
        pid = _keeper_pid(record)
        return pid is not None and keeper_running(_cmdline(pid), record)
    if s.check is not None:
        return _run(s.check).returncode == 0
    return False


def restore(boot_dir: str = BOOT_DIR) -> int:
    """Apply every record; -> the number of records that failed (each is tried)."""
    failed = 0
    for record in ordered(load(boot_dir)):
        try:
            s = step(record)
        except RecordError as err:
            print(f"glidepath restore: {record['name']}: {err}", flush=True)
            failed += 1
            continue
        if _in_place(record, s):
            print(f"glidepath restore: {s.what}: in place", flush=True)
            continue
        commands = list(s.commands)
        if record["kind"] == "tundev":
            dev = str(record["dev"])
            alias = _device_alias(dev)
            if alias is None:
                commands.insert(0, ("ip", "tuntap", "add", "dev", dev, "mode", "tun"))
            elif alias != record["alias"]:
                # Someone else's device of that name: never taken over (as the Tunnel).
                print(f"glidepath restore: {s.what}: {record['dev']} exists, not ours", flush=True)
                failed += 1
                continue
        for argv in commands:
            done = _run(argv)
            if done.returncode != 0:
                print(
                    f"glidepath restore: {s.what}: {' '.join(argv)} failed: "
                    f"{(done.stderr or done.stdout).strip()}",
                    flush=True,
                )
                failed += 1
                break
        else:
            print(f"glidepath restore: {s.what}: restored", flush=True)
    return failed


def main(argv: list[str]) -> int:
    if argv[:1] == ["restore"]:
        boot_dir = argv[2] if argv[1:2] == ["--boot-dir"] and len(argv) == 3 else BOOT_DIR
        return 1 if restore(boot_dir) else 0
    if len(argv) == 2 and argv[0] == "keeper":
        record = next((r for r in load(BOOT_DIR) if r["name"] == f"keeper-{argv[1]}"), None)
        if record is None:
            print(f"glidepath keeper: no record keeper-{argv[1]} in {BOOT_DIR}", file=sys.stderr)
            return 1
        keeper = keeper_argv(record)
        os.execv(keeper[0], list(keeper))  # noqa: S606 (argv from the record, no shell)
    print("usage: boot-restore restore [--boot-dir DIR] | keeper NAME", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
