"""Tunnel plans: the keeper script, its argv, and pure decisions about one `ssh -w N:N` link.

The link is kept by a small supervisor, `tunnel-keeper`, that glidepath installs on the
host that runs ssh. Its content is a constant (`keeper_script()`); everything that varies
(the tun number, the peer, the addresses) reaches it as argv, validated by `check` and
re-checked by the script itself. The peer's half is configured by the remote command,
built here with `transport.quote_argv` from the same validated values.

Both ends' tunN are persistent devices that glidepath creates (`ip tuntap add`) and marks
with an alias naming the link (`owner_alias`): ssh and the peer's sshd attach to them, and
when ssh dies (killed, link cut) they stay, with their addresses and every route through
them, until the keeper's next ssh attaches again. A tunN without our alias is someone
else's and is never touched.

A keeper is found by PID only: its pid file, then /proc/<pid>/cmdline must be exactly
what we would start for this tunnel. It runs as a session leader (`setsid -f`), so its
ssh child is the member of that session whose argv is our `ssh -w N:N user@peer`.
"""

from __future__ import annotations

import ipaddress
import itertools
from typing import Literal, TypedDict

from providers.facts.tunnel import Device, Keeper, Process
from providers.plans import Argv, FileWrite, Plan, PlanError
from providers.transport import quote_argv

SCRIPT_PATH = "/usr/local/lib/glidepath/tunnel-keeper"
RUN_DIR = "/run/glidepath"
LOG_DIR = "/var/log/glidepath"
#: Bumped whenever the script changes, so running keepers of an older script are replaced
#: (it is part of their argv, and a keeper whose argv differs is restarted).
KEEPER_VERSION = "v1"

KeeperStatus = Literal["absent", "stale", "current", "outdated"]


class Tunnel(TypedDict):
    """What the keeper needs, all validated: {"tun": 5, "user": "root", "peer": "198.18.2.2",
    "port": 22, "address": "198.18.105.1/24", "peer_address": "198.18.105.2/24"}."""

    tun: int
    user: str
    peer: str
    port: int
    address: str
    peer_address: str


def device(tun: int) -> str:
    return f"tun{tun}"


def owner_alias(host: str, peer: str) -> str:
    """The alias of both ends of the link from `host` to `peer` (their SSH addresses,
    validated): what makes a persistent tunN ours."""
    return f"glidepath tunnel {host}<->{peer}"


def is_ours(alias: str, facts: Device | None) -> bool:
    """A persistent tunN that glidepath created for this link."""
    return facts is not None and bool(facts.get("persistent")) and facts.get("alias") == alias


def _base(tunnel: Tunnel) -> str:
    # Named by tun number AND peer: in the lab /run and /var/log are shared by all hosts,
    # and (N, peer) is unique wherever a stack is valid (the peer cannot have two tunN).
    return f"tunnel-{device(tunnel['tun'])}-{tunnel['peer']}"


def pid_file(tunnel: Tunnel) -> str:
    return f"{RUN_DIR}/{_base(tunnel)}.pid"


def lock_file(tunnel: Tunnel) -> str:
    return f"{RUN_DIR}/{_base(tunnel)}.lock"


def log_file(tunnel: Tunnel) -> str:
    return f"{LOG_DIR}/{_base(tunnel)}.log"


# The peer's half, run by the peer's sshd inside the session that owns its tunN: address
# it, bring it up, then block while the session lives. It ends when its sshd goes (parent
# gone) or the device goes (sshd closed it), so no stray loop outlives a cut link.
# On failure it ends its own session: ssh stays up while the tun channel is open even
# after the remote command exits, and the keeper only restarts an ssh that exited.
REMOTE_SCRIPT = (
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin; "
    "dev=$1 address=$2 parent=$PPID i=0; "
    'while ! ip link show dev "$dev" >/dev/null 2>&1; do '
    'i=$((i + 1)); [ "$i" -le 50 ] || { kill "$parent"; exit 1; }; sleep 0.1; done; '
    'ip addr replace "$address" dev "$dev" && ip link set dev "$dev" up '
    '|| { kill "$parent"; exit 1; }; '
    'while [ -e "/proc/$parent" ] && ip link show dev "$dev" >/dev/null 2>&1; do sleep 1; done'
)


def remote_command(tunnel: Tunnel) -> str:
    """The string ssh hands to the peer's shell: built only by `quote_argv`."""
    return quote_argv(
        [
            "sh",
            "-c",
            REMOTE_SCRIPT,
            "glidepath-tunnel",
            device(tunnel["tun"]),
            tunnel["peer_address"],
        ]
    )


def keeper_args(tunnel: Tunnel) -> Argv:
    """The keeper's parameters (what follows the script path in its argv)."""
    return (
        KEEPER_VERSION,
        str(tunnel["tun"]),
        tunnel["user"],
        tunnel["peer"],
        str(tunnel["port"]),
        tunnel["address"],
        remote_command(tunnel),
    )


def record_base(tunnel: Tunnel) -> str:
    """What names the keeper's boot record (`keeper-<this>`) and its systemd unit
    (`glidepath-tunnel@<this>.service`): the base of its pid file."""
    return _base(tunnel)


def unit(tunnel: Tunnel) -> str:
    return f"glidepath-tunnel@{_base(tunnel)}.service"


def start_argv(tunnel: Tunnel, systemd: bool = False) -> Argv:
    if systemd:
        # Its unit runs it (Restart=always) from its boot record, now and at every boot.
        return ("systemctl", "enable", "--now", unit(tunnel))
    # setsid -f: detached from our SSH session, and leader of its own session, so its ssh
    # child can be told apart by session id even if the keeper itself were killed.
    return ("setsid", "-f", SCRIPT_PATH, *keeper_args(tunnel))


def keeper_script() -> str:
    """The supervisor's fixed content: no user data in it, ever."""
    return _KEEPER_SCRIPT


_KEEPER_SCRIPT = r"""#!/bin/bash
# glidepath tunnel keeper. Installed by glidepath (providers/tunnel.py): do not edit, it
# is rewritten on apply.
#
# Keeps the blog's `ssh -w N:N` link to a peer alive without systemd: runs ssh, addresses
# this end's tunN once ssh has opened it, and restarts ssh with a short back-off whenever
# it exits (killed, link cut, peer rebooted). The peer's end is addressed by the remote
# command glidepath builds. The host's ssh client config and known_hosts must already
# trust the peer (BatchMode: no prompts, no new host keys), and the peer's sshd must
# allow `PermitTunnel yes` for root.
#
#   tunnel-keeper v1 N USER PEER PORT ADDRESS REMOTE_COMMAND
#
# Pid file: /run/glidepath/tunnel-tunN-PEER.pid; log: /var/log/glidepath/tunnel-tunN-PEER.log.
# Stop it by that PID with TERM: it stops its ssh (tunN then goes on both ends).
set -u
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH LC_ALL=C

usage() {
  echo "usage: tunnel-keeper v1 N USER PEER PORT ADDRESS REMOTE_COMMAND" >&2
  exit 2
}
[ "$#" -eq 7 ] && [ "$1" = v1 ] || usage
n=$2 user=$3 peer=$4 port=$5 address=$6 remote=$7
# glidepath validated these already; checked again so a hand-run keeper is safe too.
[[ $n =~ ^[0-9]{1,3}$ ]] && (( 10#$n <= 255 )) || usage
[[ $user =~ ^[A-Za-z][A-Za-z0-9_-]*$ ]] || usage
[[ $peer =~ ^[0-9A-Fa-f.:]+$ ]] || usage
[[ $port =~ ^[0-9]{1,5}$ ]] && (( 10#$port >= 1 && 10#$port <= 65535 )) || usage
[[ $address =~ ^[0-9A-Fa-f.:]+/[0-9]{1,3}$ ]] || usage

dev=tun$n
name=tunnel-$dev-$peer
pid_file=/run/glidepath/$name.pid
log_file=/var/log/glidepath/$name.log
mkdir -p /run/glidepath /var/log/glidepath || exit 1
exec </dev/null >>"$log_file" 2>&1
log() { echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) [$$] $*"; }
rotate() {
  if [ "$(stat -c %s "$log_file" 2>/dev/null || echo 0)" -gt 1048576 ]; then
    mv -f "$log_file" "$log_file.1"
    exec >>"$log_file" 2>&1
  fi
}

# One keeper per tunnel: a restart racing the stop of the previous one waits for its lock.
exec 9>>"/run/glidepath/$name.lock"
if ! flock -w 10 9; then
  log "another keeper still holds $name.lock after 10 s; exiting"
  exit 1
fi
echo "$$" >"$pid_file.new" && mv -f "$pid_file.new" "$pid_file"

child=
sleeper=
stop() {
  log "stopping"
  if [ -n "$sleeper" ]; then kill -TERM "$sleeper" 2>/dev/null; fi
  if [ -n "$child" ]; then
    kill -TERM "$child" 2>/dev/null
    wait "$child"
  fi
  log "stopped"
  exit 0
}
trap stop TERM INT HUP

delay=1
log "keeping $dev: ssh -w $n:$n $user@$peer port $port, this end $address"
while :; do
  started=$SECONDS
  ssh -T -o BatchMode=yes -o StrictHostKeyChecking=yes -o ConnectTimeout=5 \
    -o ControlMaster=no -o ControlPath=none \
    -o ExitOnForwardFailure=yes -o ServerAliveInterval=1 -o ServerAliveCountMax=3 \
    -p "$port" -w "$n:$n" "$user@$peer" "$remote" </dev/null 9>&- &
  child=$!
  log "ssh started: pid $child"
  # ssh opens the local tunN before the peer confirms its end: address it once it exists.
  waited=0
  while kill -0 "$child" 2>/dev/null && ! ip link show dev "$dev" >/dev/null 2>&1; do
    if [ "$waited" -ge 150 ]; then
      log "$dev did not appear within 15 s; restarting ssh"
      kill -TERM "$child" 2>/dev/null
      break
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  if kill -0 "$child" 2>/dev/null && ip link show dev "$dev" >/dev/null 2>&1; then
    if ip addr replace "$address" dev "$dev" && ip link set dev "$dev" up; then
      log "$dev up with $address"
    else
      log "could not address $dev; restarting ssh"
      kill -TERM "$child" 2>/dev/null
    fi
  fi
  wait "$child"
  status=$?
  child=
  log "ssh exited with status $status"
  # A link that lasted is retried after 1 s; quick failures back off 1, 2, 4, 5, 5 s.
  if (( SECONDS - started >= 30 )); then delay=1; fi
  rotate
  sleep "$delay" &
  sleeper=$!
  wait "$sleeper"
  sleeper=
  delay=$(( delay * 2 > 5 ? 5 : delay * 2 ))
done
"""


# --- what runs, decided from facts ----------------------------------------------------


def _keeper_params(cmdline: list[str] | None) -> list[str] | None:
    """The argv after our script path, if this process runs our keeper script."""
    if not cmdline:
        return None
    # `bash /usr/local/lib/glidepath/tunnel-keeper ...` (the shebang), or run directly.
    for index in (0, 1):
        if len(cmdline) > index and cmdline[index] == SCRIPT_PATH:
            return cmdline[index + 1 :]
    return None


def keeper_status(tunnel: Tunnel, keeper: Keeper) -> KeeperStatus:
    """absent: no pid file; stale: the pid is not our keeper for this tunnel (it exited,
    or the PID now belongs to something else); current: ours with exactly these
    parameters; outdated: ours for this tun and peer, other parameters or script version."""
    if keeper["pid"] is None:
        return "absent"
    params = _keeper_params(keeper["cmdline"])
    if params is None or len(params) < 4:
        return "stale"
    if params[1] != str(tunnel["tun"]) or params[3] != tunnel["peer"]:
        return "stale"  # a keeper, but for another tunnel: never ours to touch
    return "current" if tuple(params) == keeper_args(tunnel) else "outdated"


def is_our_ssh(tunnel: Tunnel, process: Process) -> bool:
    """`ssh ... -w 5:5 root@198.18.2.2 <remote>` as `ps -o args` shows it."""
    words = process["args"].split()
    if not words or words[0].rsplit("/", 1)[-1] != "ssh":
        return False
    n = tunnel["tun"]
    pairs = list(itertools.pairwise(words))
    return ("-w", f"{n}:{n}") in pairs and f"{tunnel['user']}@{tunnel['peer']}" in words


def our_processes(tunnel: Tunnel, keeper: Keeper) -> list[int]:
    """PIDs of ours that are alive: the keeper (current or outdated) and every ssh of its
    session that is our `ssh -w` for this tunnel (also one the keeper left behind)."""
    pids: list[int] = []
    status = keeper_status(tunnel, keeper)
    if keeper["pid"] is not None and status in ("current", "outdated"):
        pids.append(keeper["pid"])
    for member in keeper["members"]:
        if member["pid"] not in pids and is_our_ssh(tunnel, member):
            pids.append(member["pid"])
    return pids


def ssh_pids(tunnel: Tunnel, keeper: Keeper) -> list[int]:
    return [m["pid"] for m in keeper["members"] if is_our_ssh(tunnel, m)]


def needs_stop(tunnel: Tunnel, keeper: Keeper) -> bool:
    """True when something of ours runs that is not the keeper we want: an outdated keeper,
    or an ssh whose keeper is gone (it would hold tunN and block a new keeper)."""
    status = keeper_status(tunnel, keeper)
    if status == "outdated":
        return True
    return status != "current" and bool(ssh_pids(tunnel, keeper))


def plan_script(installed: str | None) -> Plan:
    """Install the keeper script when the host's copy is missing or differs.

    A running keeper keeps the old inode (the write is a rename), so this never disturbs it.
    """
    if installed == keeper_script():
        return Plan.nothing(f"{SCRIPT_PATH} is up to date")
    return Plan.write(
        FileWrite(SCRIPT_PATH, keeper_script(), "0755"),
        reason=f"{'install' if installed is None else 'update'} {SCRIPT_PATH}",
    )


def plan_start(
    tunnel: Tunnel,
    keeper: Keeper,
    host_device: Device | None,
    peer_device: Device | None,
    alias: str,
    systemd: bool = False,
) -> Plan:
    """Start the keeper unless ours runs with these parameters (`systemd`: by its unit).

    Without a keeper of ours, a tunN on either end that is not our persistent device
    (alias `alias`) belongs to someone else: a clash, not something to take over.
    """
    dev = device(tunnel["tun"])
    status = keeper_status(tunnel, keeper)
    if needs_stop(tunnel, keeper):
        pids = " ".join(str(p) for p in our_processes(tunnel, keeper))
        raise PlanError(
            f"{dev}: glidepath processes {pids} run with other parameters; stop them first"
        )
    if status == "current":
        return Plan.nothing(f"keeper pid {keeper['pid']} keeps {dev} to {tunnel['peer']}")
    for where, existing in (("this host", host_device), (f"peer {tunnel['peer']}", peer_device)):
        if existing is not None and not is_ours(alias, existing):
            raise PlanError(
                f"{dev} already exists on {where} and no glidepath keeper holds it "
                "(another tunnel or a hand-run `ssh -w`): remove it or choose another tun number"
            )
    return Plan.run(
        start_argv(tunnel, systemd),
        reason=f"start the keeper for {dev} to {tunnel['peer']} ({status})",
    )


def plan_unit_stop(tunnel: Tunnel, systemd: bool) -> Plan:
    """On a systemd host, stop and disable the keeper's unit first, or it restarts it."""
    if not systemd:
        return Plan.nothing("no systemd: the keeper is stopped by its PID alone")
    return Plan.run(("systemctl", "disable", "--now", unit(tunnel)), reason=f"stop {unit(tunnel)}")


def plan_stop(tunnel: Tunnel, keeper: Keeper, signal: str = "TERM") -> Plan:
    """Signal our live processes by PID; once none is left, forget the pid and lock files.

    Nothing that is not ours is ever signalled: a stale pid file's PID is left alone.
    """
    if signal not in ("TERM", "KILL"):
        raise PlanError(f"signal must be TERM or KILL, not {signal!r}")
    dev = device(tunnel["tun"])
    pids = our_processes(tunnel, keeper)
    if pids:
        return Plan.run(
            ["kill", f"-{signal}", "--", *(str(p) for p in pids)],
            reason=f"stop the keeper of {dev} and its ssh ({signal})",
        )
    if keeper["pid"] is not None:
        return Plan.run(
            ["rm", "-f", "--", pid_file(tunnel), lock_file(tunnel)],
            reason=f"no keeper of {dev} runs; forget its pid file",
        )
    return Plan.nothing(f"no keeper of {dev} to {tunnel['peer']} runs")


def _same_family(address: str, other: str) -> bool:
    return ipaddress.ip_interface(address).version == ipaddress.ip_interface(other).version


#: Both ends' MTU. ssh -w carries one IP packet per channel message and pays per packet:
#: at the default 1500 a move's memory and disk copy through the tunnel took 10.3 s where
#: 16000 takes 3.6 s (512 MiB disk, lab, the same run). OpenSSH reads a tun packet into a
#: 16 KiB buffer (CHAN_RBUF, 4 bytes of it the address family), so 16000 leaves room. Only
#: the hosts' own traffic uses it (the migration); the VMs' packets stay at their 1500.
TUNNEL_MTU = 16000


def plan_end(dev: str, address: str, facts: Device | None) -> Plan:
    """One end of the link: exactly `address` (of its family) on `dev`, and `dev` set up
    (it has carrier only while an ssh holds it; that is the keeper's part)."""
    if facts is None:
        return Plan.nothing(f"{dev} does not exist")
    commands: list[list[str]] = [
        ["ip", "addr", "del", other, "dev", dev]
        for other in facts["addresses"]
        if other != address and _same_family(other, address)
    ]
    if address not in facts["addresses"]:
        commands.append(["ip", "addr", "replace", address, "dev", dev])
    if facts.get("mtu", TUNNEL_MTU) != TUNNEL_MTU:
        commands.append(["ip", "link", "set", "dev", dev, "mtu", str(TUNNEL_MTU)])
    if not facts.get("admin_up", facts["up"]):
        commands.append(["ip", "link", "set", "dev", dev, "up"])
    if not commands:
        return Plan.nothing(f"{dev} is up with {address}")
    return Plan.run(*commands, reason=f"{dev}: {address}, MTU {TUNNEL_MTU}, up")


def plan_device(dev: str, address: str, alias: str, facts: Device | None) -> Plan:
    """One end's persistent tunN: created with our alias when absent, then addressed and
    set up (`plan_end`). A tunN that is not ours is a clash."""
    if facts is None:
        return Plan.run(
            ["ip", "tuntap", "add", "dev", dev, "mode", "tun"],
            ["ip", "link", "set", "dev", dev, "alias", alias],
            ["ip", "link", "set", "dev", dev, "mtu", str(TUNNEL_MTU)],
            ["ip", "addr", "replace", address, "dev", dev],
            ["ip", "link", "set", "dev", dev, "up"],
            reason=f"create {dev} (persistent: its addresses and routes outlive an ssh "
            f"restart), {address}, up",
        )
    if not is_ours(alias, facts):
        raise PlanError(
            f"{dev} exists and is not glidepath's persistent device for this link "
            f"(alias {facts.get('alias')!r}, wants {alias!r}): remove it or choose another "
            "tun number"
        )
    return plan_end(dev, address, facts)


def plan_remove_device(dev: str, alias: str, facts: Device | None) -> Plan:
    """Delete our persistent tunN (routes through it go with it); leave anyone else's."""
    if facts is None:
        return Plan.nothing(f"{dev} is already gone")
    if not is_ours(alias, facts):
        return Plan.nothing(f"{dev} is not glidepath's (alias {facts.get('alias')!r}): left alone")
    return Plan.run(["ip", "link", "del", "dev", dev], reason=f"remove {dev}")


def end_is_up(address: str, facts: Device | None) -> bool:
    return facts is not None and facts["up"] and address in facts["addresses"]


def tunnel_state(
    tunnel: Tunnel,
    keeper: Keeper,
    host_device: Device | None,
    peer_device: Device | None,
    alias: str,
) -> Literal["up", "down"]:
    """up: our current keeper runs and both ends have their address on a live device that
    is our persistent one (a tunN that ssh made itself would lose its routes on the next
    ssh restart: down, so `up` replaces it)."""
    if keeper_status(tunnel, keeper) != "current":
        return "down"
    if not (is_ours(alias, host_device) and is_ours(alias, peer_device)):
        return "down"
    if not end_is_up(tunnel["address"], host_device):
        return "down"
    return "up" if end_is_up(tunnel["peer_address"], peer_device) else "down"


def actual_address(desired: str, facts: Device | None) -> str | None:
    """What refresh reports for one end: the desired address if present, else the first of
    its family, else None (no device, or no address)."""
    if facts is None:
        return None
    if desired in facts["addresses"]:
        return desired
    same = [a for a in facts["addresses"] if _same_family(a, desired)]
    return same[0] if same else None
