"""Bring the lab up, tear it down, report its status.

Everything the lab creates is recorded in STATE_FILE *before* it is created,
so `down` (and `up` after a crash) removes exactly what is the lab's: the
namespaces it recorded, the processes inside them (found by namespace inode,
killed by PID), its mounts, the glab0 veth, the one root-namespace route, and
the loop devices over lab volume files (lab/blockdev.py, recorded through
`recording`).
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lab import config
from lab import topology as t
from lab.proc import CommandError, host_argv, run, sh, write_file


class LabError(RuntimeError):
    """The lab cannot be brought up (clash, foreign namespace, failed step)."""


# --- state -----------------------------------------------------------------


@dataclass
class State:
    """What this lab created; written before each thing is created."""

    hosts: list[str] = field(default_factory=list)
    netns: list[str] = field(default_factory=list)
    mntns: list[str] = field(default_factory=list)
    ns_dir_mounted: bool = False
    root_link: bool = False
    created_run_netns: bool = False
    #: Mount points the lab had to create in the root namespace (removed by down).
    created_dirs: list[str] = field(default_factory=list)
    #: Files of lab volumes (lab/blockdev.py): down detaches the loop devices over them.
    volume_files: list[str] = field(default_factory=list)
    complete: bool = False
    started_at: float = 0.0

    def save(self) -> None:
        t.STATE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_file(t.STATE_FILE, json.dumps(asdict(self), indent=2) + "\n", 0o600)


def load_state() -> State | None:
    try:
        data = json.loads(t.STATE_FILE.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        # A torn state file still means "something of ours may be left".
        return State(netns=[t.CORE, t.CLIENT, *t.host_names(t.MAX_HOSTS)], root_link=True)
    known = {k: v for k, v in data.items() if k in State.__dataclass_fields__}
    return State(**known)


# --- serialising up/down across processes ----------------------------------------

#: Several test sessions and tools share one lab: up/down hold this lock.
LOCK_FILE = Path("/run/lock/glidepath-lab.lock")
#: Runs libvirtd below a subreaper of its own (see start_libvirtd).
REAPER = Path(__file__).with_name("reaper.py")
LIBVIRTD = ("taskset", "-c", "0", "libvirtd", "-d", "-p", "/run/libvirt/libvirtd.pid")


@contextmanager
def _locked(timeout: float = 300.0) -> Iterator[None]:
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK_FILE, "a") as f:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LabError(
                        f"another lab up/down holds {LOCK_FILE} for over {timeout} s"
                    ) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextmanager
def recording() -> Iterator[State]:
    """The lab's state, for a test to record what it makes in the lab before making it
    (a lab volume's file, a directory in /dev), so `down` removes it; saved at the end.
    Serialised with up and down."""
    with _locked():
        state = load_state()
        if state is None:
            raise LabError("the lab is not up")
        yield state
        state.save()


def loop_devices(files: Iterable[str]) -> dict[str, str]:
    """The loop devices attached over any of `files` -> the file (`losetup --json --list`;
    a file deleted under its loop device shows as "<path> (deleted)")."""
    wanted = set(files)
    if not wanted:
        return {}
    listed = json.loads(sh(["losetup", "--json", "--list"]).stdout or '{"loopdevices": []}')
    found = {}
    for loop in listed.get("loopdevices", []):
        back = str(loop.get("back-file") or "").removesuffix(" (deleted)")
        if back in wanted:
            found[str(loop["name"])] = back
    return found


# --- small helpers -----------------------------------------------------------


def _log(msg: str) -> None:
    print(f"lab: {msg}", file=sys.stderr, flush=True)


def _netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def _mounted_paths() -> set[str]:
    out: set[str] = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            out.add(line.split()[4].replace("\\040", " "))
    return out


def _mounts_of(pid: int) -> set[str]:
    """Mount points as process `pid` sees them (in its mount namespace)."""
    try:
        with open(f"/proc/{pid}/mountinfo") as f:
            return {line.split()[4].replace("\\040", " ") for line in f if len(line.split()) > 4}
    except OSError:
        return set()


def _link_exists(name: str, netns: str | None = None) -> bool:
    argv = ["ip", "link", "show", "dev", name]
    if netns:
        argv = ["ip", "-n", netns, "link", "show", "dev", name]
    return sh(argv, check=False).returncode == 0


def _pid_alive(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    # A zombie or a recycled PID in another namespace does not count.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    if stat.rsplit(")", 1)[1].split()[0] == "Z":
        return None
    return pid


def _tcp_open(addr: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((addr, port), timeout=timeout):
            return True
    except OSError:
        return False


def _wait(pred: Callable[[], bool], what: str, timeout: float, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return
        if time.monotonic() > deadline:
            raise LabError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


# --- clash checks ------------------------------------------------------------


def _overlapping(net: ipaddress.IPv4Network) -> list[ipaddress.IPv4Network]:
    if net.prefixlen == 0:
        return []  # a default route is not a clash
    return [r for r in t.LAB_RANGES if r.overlaps(net)]


def clashes_in(
    addrs: list[dict[str, Any]],
    routes: list[dict[str, Any]],
    resolv_conf: str,
    own_link: str | None = None,
) -> list[str]:
    """Which addresses (`ip -j -4 addr`), routes (`ip -j -4 route show table all`)
    and resolvers (resolv.conf text) overlap a lab range (pure).

    `own_link`: ignore addresses and routes on this device (the lab's own glab0).
    """
    problems: list[str] = []
    for link in addrs:
        if own_link and link.get("ifname") == own_link:
            continue
        for a in link.get("addr_info", []):
            if a.get("family", "inet") != "inet":
                continue
            net = ipaddress.IPv4Interface(f"{a['local']}/{a['prefixlen']}").network
            for r in _overlapping(net):
                problems.append(
                    f"address {a['local']}/{a['prefixlen']} on {link.get('ifname')} overlaps {r}"
                )
    for rt in routes:
        if own_link and rt.get("dev") == own_link:
            continue
        dst = rt.get("dst", "")
        if dst in ("", "default"):
            continue
        try:
            net = ipaddress.IPv4Network(dst, strict=False)
        except ValueError:
            continue
        for r in _overlapping(net):
            problems.append(
                f"route {dst} dev {rt.get('dev', '?')} table {rt.get('table', 'main')} overlaps {r}"
            )
    for line in resolv_conf.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                ip = ipaddress.ip_address(parts[1])
            except ValueError:
                continue
            if isinstance(ip, ipaddress.IPv4Address) and t.in_lab(ip):
                problems.append(f"resolver {ip} is inside a lab range")
    return problems


def find_clashes(own_link: str | None = None) -> list[str]:
    """clashes_in() for this machine's root namespace."""
    addrs = json.loads(sh(["ip", "-j", "-4", "addr", "show"]).stdout or "[]")
    routes = json.loads(sh(["ip", "-j", "-4", "route", "show", "table", "all"]).stdout or "[]")
    try:
        resolv = Path("/etc/resolv.conf").read_text()
    except OSError:
        resolv = ""
    return clashes_in(addrs, routes, resolv, own_link)


def _check_foreign(state: State | None, names: Iterable[str]) -> None:
    ours = set(state.netns) if state else set()
    foreign = [n for n in names if _netns_exists(n) and n not in ours]
    if foreign:
        raise LabError(
            f"refusing: network namespace(s) {', '.join(foreign)} exist but were not "
            f"created by this lab (no record in {t.STATE_FILE}); remove them or rename"
        )
    if _link_exists(t.ROOT_LINK) and not (state and state.root_link):
        raise LabError(f"refusing: link {t.ROOT_LINK} exists but was not created by this lab")


# --- health ------------------------------------------------------------------


def _health(state: State) -> list[str]:
    """Why the recorded lab is not fully up (empty list: healthy)."""
    bad: list[str] = []
    if not state.complete:
        bad.append("set-up did not complete")
    mounts = _mounted_paths()
    for n in [t.CORE, t.CLIENT, *state.hosts]:
        if not _netns_exists(n):
            bad.append(f"netns {n} missing")
    for name in state.hosts:
        h = t.hypervisor(name)
        for p in (h.mnt_ns, h.uts_ns):
            if str(p) not in mounts:
                bad.append(f"{p} not mounted")
        sshd = _pid_alive(h.sshd_pidfile)
        if not sshd:
            bad.append(f"sshd on {name} not running")
        else:
            # A lab brought up before a bind was added shares that path between hosts.
            inside = _mounts_of(sshd)
            bad += [f"{path} not bound on {name}" for path, _ in t.HOST_BINDS if path not in inside]
        if not _pid_alive(h.libvirtd_pidfile):
            bad.append(f"libvirtd on {name} not running")
    if not _pid_alive(t.CORE_SSHD_PIDFILE):
        bad.append("sshd on core not running")
    if not _link_exists(t.ROOT_LINK):
        bad.append(f"{t.ROOT_LINK} missing")
    else:
        r = sh(["ip", "-j", "route", "show", str(t.CONTROL_ROUTE)], check=False)
        if str(t.CORE_CTL_ADDR.ip) not in r.stdout:
            bad.append(f"route {t.CONTROL_ROUTE} via {t.CORE_CTL_ADDR.ip} missing")
    return bad


# --- up ----------------------------------------------------------------------


def _ns_sysctl(ns: str, settings: dict[str, str]) -> None:
    argv = ["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in settings.items())]
    sh(["nsenter", f"--net=/run/netns/{ns}", *argv])


def _keygen(path: Path, comment: str) -> str:
    if not path.exists():
        sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
    pub = Path(str(path) + ".pub").read_text().split()
    return f"{pub[0]} {pub[1]}"


def _veth(a: str, a_ns: str | None, b: str, b_ns: str) -> None:
    """veth a (in a_ns, or root) <-> b (in b_ns)."""
    base = ["ip"] if a_ns is None else ["ip", "-n", a_ns]
    sh([*base, "link", "add", a, "type", "veth", "peer", "name", b, "netns", b_ns])


def _addr_up(ns: str | None, dev: str, addr: ipaddress.IPv4Interface) -> None:
    base = ["ip"] if ns is None else ["ip", "-n", ns]
    sh([*base, "addr", "add", str(addr), "dev", dev])
    sh([*base, "link", "set", dev, "up"])


def _create_netns(state: State, name: str) -> None:
    state.netns.append(name)
    state.save()
    if not Path("/run/netns").exists():
        state.created_run_netns = True
        state.save()
    sh(["ip", "netns", "add", name])
    sh(["ip", "-n", name, "link", "set", "lo", "up"])


def _setup_core_client(state: State) -> None:
    _create_netns(state, t.CORE)
    # core is the provider's router: forwards, and drops packets whose source
    # is not routed back out of the interface they arrived on (strict rp_filter;
    # the effective value is max(all, iface), so 'all' makes every port strict).
    _ns_sysctl(
        t.CORE,
        {
            "net.ipv4.ip_forward": "1",
            "net.ipv4.conf.all.rp_filter": "1",
            "net.ipv4.conf.default.rp_filter": "1",
            "net.ipv6.conf.all.disable_ipv6": "1",
            "net.ipv6.conf.default.disable_ipv6": "1",
        },
    )
    state.root_link = True
    state.save()
    _veth(t.ROOT_LINK, None, t.CORE_CTL_LINK, t.CORE)
    # No IPv6 link-local chatter from the root namespace into the lab.
    sh(["sysctl", "-q", "-w", f"net.ipv6.conf.{t.ROOT_LINK}.disable_ipv6=1"], check=False)
    # noprefixroute + onlink: the 198.18.0.0/15 route is the only one the lab
    # adds to the root namespace's main table (no connected /30 beside it).
    sh(["ip", "addr", "add", str(t.ROOT_ADDR), "dev", t.ROOT_LINK, "noprefixroute"])
    sh(["ip", "link", "set", t.ROOT_LINK, "up"])
    _addr_up(t.CORE, t.CORE_CTL_LINK, t.CORE_CTL_ADDR)
    sh(
        [
            "ip",
            "route",
            "add",
            str(t.CONTROL_ROUTE),
            "via",
            str(t.CORE_CTL_ADDR.ip),
            "dev",
            t.ROOT_LINK,
            "onlink",
        ]
    )

    _create_netns(state, t.CLIENT)
    _ns_sysctl(
        t.CLIENT, {"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"}
    )
    _veth(t.CORE_CLIENT_LINK, t.CORE, t.CLIENT_LINK, t.CLIENT)
    _addr_up(t.CORE, t.CORE_CLIENT_LINK, t.CORE_CLIENT_ADDR)
    _addr_up(t.CLIENT, t.CLIENT_LINK, t.CLIENT_ADDR)
    sh(["ip", "-n", t.CLIENT, "route", "add", "default", "via", str(t.CORE_CLIENT_ADDR.ip)])


def _write_host_files(
    h: t.Hypervisor, hosts: tuple[t.Hypervisor, ...], client_pub: str, host_pubs: dict[str, str]
) -> None:
    d = h.state_dir
    for _, sub in t.HOST_BINDS:
        if sub not in ("hosts", "rt_tables"):
            (d / sub).mkdir(parents=True, exist_ok=True)
    t.host_cache_dir(h.name).mkdir(parents=True, exist_ok=True)
    etc = d / "etc-libvirt"
    write_file(etc / "libvirtd.conf", config.libvirtd_conf(h.name))
    write_file(etc / "qemu.conf", config.qemu_conf(str(h.address)))
    write_file(etc / "libvirt.conf", 'uri_default = "qemu:///system"\n')
    write_file(etc / "scripts" / "vif-route", config.vif_route_script(), 0o755)
    (etc / "qemu").mkdir(exist_ok=True)
    for sub in ("images", "qemu"):
        (d / "var-lib-libvirt" / sub).mkdir(parents=True, exist_ok=True)
    (d / "log-libvirt" / "qemu").mkdir(parents=True, exist_ok=True)
    ssh = d / "root-ssh"
    ssh.chmod(0o700)
    write_file(ssh / "authorized_keys", client_pub + " glidepath-lab\n", 0o600)
    shutil.copyfile(t.CLIENT_KEY, ssh / "id_ed25519")
    (ssh / "id_ed25519").chmod(0o600)
    write_file(ssh / "id_ed25519.pub", client_pub + " glidepath-lab\n", 0o644)
    write_file(ssh / "config", config.host_ssh_config(), 0o600)
    write_file(ssh / "known_hosts", _known_hosts_text(hosts, host_pubs), 0o644)
    write_file(d / "hosts", config.hosts_file(h.name, hosts))
    write_file(d / "bashrc", config.LAB_BASHRC)
    write_file(d / "rt_tables", config.rt_tables())
    write_file(
        d / "sshd_config",
        config.sshd_config(
            str(h.address), d / "ssh_host_ed25519_key", h.sshd_pidfile, ".ssh/authorized_keys"
        ),
    )


def _known_hosts_text(hosts: tuple[t.Hypervisor, ...], host_pubs: dict[str, str]) -> str:
    entries = [(h.name, str(h.address), host_pubs[h.name]) for h in hosts]
    entries.append((t.CORE, str(t.CORE_ADDRESS), host_pubs[t.CORE]))
    return config.known_hosts(entries)


#: A hypervisor's own network settings, as its OS configuration has them: applied at every
#: boot (`lab reboot` too).
HOST_OS_SYSCTLS = {
    "net.ipv6.conf.all.disable_ipv6": "1",
    "net.ipv6.conf.default.disable_ipv6": "1",
}
#: What `lab up` sets besides, at runtime: the forwarding glidepath's `Sysctl` resources
#: hold (and persist in /etc/sysctl.d). A rebooted host has them only from there.
HOST_UP_SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
}


def _setup_hypervisor_net(state: State, h: t.Hypervisor) -> None:
    _create_netns(state, h.name)
    _ns_sysctl(h.name, HOST_UP_SYSCTLS)
    host_network(h)


def host_network(h: t.Hypervisor) -> None:
    """A hypervisor's network as its OS brings it up (its namespace exists, empty): the
    uplink br0 to core, its address and default route, and core's side of the link."""
    _ns_sysctl(h.name, HOST_OS_SYSCTLS)
    _veth(h.core_link, t.CORE, t.UPLINK, h.name)
    _addr_up(t.CORE, h.core_link, h.gateway)
    _addr_up(h.name, t.UPLINK, h.uplink)
    sh(["ip", "-n", h.name, "route", "add", "default", "via", str(h.gateway.ip)])
    # strict rp_filter on every host-facing port of core (also covered by 'all').
    _ns_sysctl(t.CORE, {f"net.ipv4.conf.{h.core_link}.rp_filter": "1"})


def _setup_hypervisor_mounts(state: State, h: t.Hypervisor) -> None:
    state.mntns.append(h.name)
    state.save()
    host_mounts(state, h)


def host_mounts(state: State, h: t.Hypervisor) -> None:
    """A hypervisor's mount and UTS namespaces, made anew: its per-host binds, a sysfs
    of its network namespace, its hostname."""
    for p in (h.mnt_ns, h.uts_ns):
        p.touch()
    # Persistent mount + UTS namespaces: bind-mounted onto files in NS_DIR
    # (itself a private mount, else the kernel refuses the nsfs bind).
    sh(["unshare", f"--mount={h.mnt_ns}", f"--uts={h.uts_ns}", "--propagation", "private", "true"])

    def inside(*argv: str) -> None:
        run(h.name, list(argv))

    # Drop this namespace's copies of other namespaces' nsfs binds, so no host's
    # mount namespace keeps another's alive after `lab down`.
    inside("umount", "-l", str(t.NS_DIR))
    if "/run/netns" in _mounted_paths():
        inside("umount", "-l", "/run/netns")
    for inside_path, sub in t.HOST_BINDS:
        if not Path(inside_path).exists():
            # e.g. /run/libvirt when no libvirtd ever ran in the root namespace.
            state.created_dirs.append(inside_path)
            state.save()
            Path(inside_path).mkdir(parents=True)
        inside("mount", "--bind", str(h.state_dir / sub), inside_path)
    inside("mount", "--bind", str(t.host_cache_dir(h.name)), t.HOST_CACHE_BIND)
    if Path(t.ROOT_BASHRC).exists():
        inside("mount", "--bind", str(h.state_dir / "bashrc"), t.ROOT_BASHRC)
    # A fresh sysfs shows the net devices of the namespace that mounts it. The
    # old /sys and its cgroup submounts must go first: libvirt reads mountinfo,
    # and shadowed v1 cgroup mounts make `virsh start` fail with "Failed to
    # create v1 controller cpu for group".
    for _ in range(4):
        if not _ns_has_mount(h, "/sys"):
            break
        run(h.name, ["umount", "-R", "-l", "/sys"], check=False)
    inside("mount", "-t", "sysfs", "sysfs", "/sys")
    # An empty tmpfs at /sys/fs/cgroup: libvirt then finds no cgroup mounts and
    # runs QEMU without cgroups. Mounting cgroup2 there would make each host's
    # libvirtd create machine/qemu-<id>-<vm> in the one hierarchy all hosts and
    # the root namespace share (clashing names across a migration, leftovers
    # after `lab down`).
    inside("mount", "-t", "tmpfs", "-o", "mode=755,size=64k", "cgroup-none", "/sys/fs/cgroup")
    inside("hostname", h.name)


def _ns_has_mount(h: t.Hypervisor, target: str) -> bool:
    out = run(h.name, ["cat", "/proc/self/mountinfo"]).stdout
    return any(line.split()[4] == target for line in out.splitlines() if len(line.split()) > 4)


def start_hypervisor_daemons(h: t.Hypervisor) -> None:
    d = h.state_dir
    run(h.name, ["/usr/sbin/sshd", "-f", str(d / "sshd_config"), "-E", str(d / "sshd.log")])
    start_libvirtd(h.name)
    _wait(lambda: _tcp_open(str(h.address), 22, 0.5), f"sshd on {h.name}", 10)


def start_libvirtd(host: str) -> int:
    """Start a hypervisor's libvirtd as `lab up` does (also after a test killed it);
    -> its PID. A libvirtd that starts while VMs run re-attaches to them."""
    h = t.hypervisor(host)
    # Pinned to CPU 0: libvirt compares the host's CPUID with its cached QEMU
    # capabilities, and CPUID differs between this machine's CPUs, so an
    # unpinned libvirtd re-probed QEMU (7 s) on about every other start.
    # libvirt resets each QEMU's affinity to all CPUs, so VMs are not pinned.
    # Below a reaper of its own: this machine's PID 1 reaps a stopped QEMU 1.5-1.8 s late,
    # and libvirt waits for that (lab/reaper.py).
    run(
        h.name,
        [sys.executable, str(REAPER), *LIBVIRTD],
        timeout=60,
    )
    _wait(lambda: _pid_alive(h.libvirtd_pidfile) is not None, f"libvirtd pid on {h.name}", 10)
    pid = _pid_alive(h.libvirtd_pidfile)
    if pid is None:
        raise LabError(f"libvirtd on {h.name} exited right after starting")
    return pid


def libvirtd_pid(host: str) -> int | None:
    """The PID of a hypervisor's libvirtd, None if it is not running."""
    return _pid_alive(t.hypervisor(host).libvirtd_pidfile)


def _warm_up(h: t.Hypervisor, peer: t.Hypervisor) -> None:
    # First contact probes QEMU's capabilities (5-8 s); pay it now, not in a migration.
    run(h.name, ["virsh", "-c", "qemu:///system", "capabilities"], timeout=120)
    run(
        h.name,
        ["virsh", "-c", "qemu:///system", "domcapabilities", "--virttype", "qemu"],
        timeout=120,
    )
    # Host-to-host SSH with strict host keys, as tunnels and qemu+ssh use it.
    run(h.name, ["ssh", f"root@{peer.address}", "true"], timeout=30)


def _setup_core_sshd(client_pub: str) -> None:
    d = t.CORE_STATE_DIR
    write_file(d / "authorized_keys", client_pub + " glidepath-lab\n", 0o600)
    write_file(
        d / "sshd_config",
        config.sshd_config(
            str(t.CORE_ADDRESS),
            d / "ssh_host_ed25519_key",
            t.CORE_SSHD_PIDFILE,
            str(d / "authorized_keys"),
        ),
    )
    sshd = ["/usr/sbin/sshd", "-f", str(d / "sshd_config"), "-E", str(d / "sshd.log")]
    if Path(t.ROOT_BASHRC).exists():
        # core has no mount namespace of its own: give its sshd one, with the lab's
        # bashrc over the machine's (see config.LAB_BASHRC).
        write_file(d / "bashrc", config.LAB_BASHRC)
        sshd = [
            "unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount --bind "$1" "$2" && shift 2 && exec "$@"', "sh",
            str(d / "bashrc"), t.ROOT_BASHRC, *sshd,
        ]  # fmt: skip
    run(t.CORE, sshd)
    _wait(lambda: _tcp_open(str(t.CORE_ADDRESS), 22, 0.5), "sshd on core", 10)


def ssh_argv(host: str, argv: Iterable[str] = (), *, tty: bool = False) -> list[str]:
    """argv for the root namespace's ssh client into a lab host (lab key, lab known_hosts)."""
    return ["ssh", "-F", str(t.SSH_CONFIG), *(["-t"] if tty else []), host, *argv]


def up(hosts: int = 2) -> dict[str, Any]:
    """Bring the lab up with (at least) `hosts` hypervisors; a no-op if it is already up.

    Cleans up a crashed earlier run (recorded in STATE_FILE) first. Returns
    status() plus 'changed' and 'seconds'. Serialised with other up/down calls.
    """
    start = time.monotonic()
    with _locked():
        return _up(hosts, start)


def _up(hosts: int, start: float) -> dict[str, Any]:
    from lab import guest  # the image is built outside the namespaces, once

    names = t.host_names(hosts)
    state = load_state()
    if state is not None:
        problems = _health(state)
        # A bigger healthy lab serves a smaller request: never tear down hosts
        # another session may be using just to shrink (`lab down` first for that).
        if not problems and tuple(state.hosts[: len(names)]) == names:
            return {**status(), "changed": False, "seconds": round(time.monotonic() - start, 2)}
        why = "; ".join(problems) if problems else f"hosts {state.hosts} -> {list(names)}"
        _log(f"rebuilding ({why})")
        _down()
        state = None
    _check_foreign(None, [t.CORE, t.CLIENT, *names])
    clashes = find_clashes()
    if clashes:
        raise LabError(
            "refusing to start: the lab's ranges ("
            + ", ".join(str(r) for r in t.LAB_RANGES)
            + ") clash with this machine:\n  "
            + "\n  ".join(clashes)
        )
    for tool in (
        "nsenter",
        "unshare",
        "libvirtd",
        "virsh",
        "qemu-system-x86_64",
        "/usr/sbin/sshd",
        "ssh-keygen",
        "tcpdump",
        "iptables",
        "qemu-img",
    ):
        if shutil.which(tool) is None:
            raise LabError(f"missing tool {tool}: install the lab's Debian packages first")

    guest.ensure_image()

    state = State(hosts=list(names), started_at=time.time())
    state.save()
    # Whether VMs get KVM or TCG: tried once (cached in GUEST_DIR), beside the set-up.
    kvm = ThreadPoolExecutor(max_workers=1)
    kvm_done = kvm.submit(guest.kvm_usable)
    try:
        _bring_up(state, t.hypervisors(hosts))
        kvm_done.result(timeout=60)
    except BaseException:
        _log(f"set-up failed; state kept in {t.STATE_DIR} for `lab down`")
        raise
    finally:
        kvm.shutdown(wait=True)
    state.complete = True
    state.save()
    return {**status(), "changed": True, "seconds": round(time.monotonic() - start, 2)}


def _bring_up(state: State, hosts: tuple[t.Hypervisor, ...]) -> None:
    os.chmod(t.STATE_DIR, 0o700)
    client_pub = _keygen(t.CLIENT_KEY, "glidepath-lab")
    host_pubs: dict[str, str] = {}
    for h in hosts:
        h.state_dir.mkdir(parents=True, exist_ok=True)
        host_pubs[h.name] = _keygen(h.state_dir / "ssh_host_ed25519_key", f"glidepath-lab-{h.name}")
    t.CORE_STATE_DIR.mkdir(parents=True, exist_ok=True)
    host_pubs[t.CORE] = _keygen(t.CORE_STATE_DIR / "ssh_host_ed25519_key", "glidepath-lab-core")
    write_file(t.KNOWN_HOSTS, _known_hosts_text(hosts, host_pubs), 0o644)
    write_file(
        t.SSH_CONFIG,
        config.client_ssh_config(
            [(h.name, str(h.address)) for h in hosts] + [(t.CORE, str(t.CORE_ADDRESS))]
        ),
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir

    t.NS_DIR.mkdir(parents=True, exist_ok=True)
    state.ns_dir_mounted = True
    state.save()
    sh(["mount", "--bind", str(t.NS_DIR), str(t.NS_DIR)])
    sh(["mount", "--make-private", str(t.NS_DIR)])

    _setup_core_client(state)
    for h in hosts:
        _write_host_files(h, hosts, client_pub, host_pubs)
        _setup_hypervisor_net(state, h)
        _setup_hypervisor_mounts(state, h)
    # core routes the prefix to old at start.
    sh(["ip", "-n", t.CORE, "route", "add", str(t.PREFIX), "via", str(hosts[0].address)])
    _setup_core_sshd(client_pub)
    with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        list(pool.map(start_hypervisor_daemons, hosts))
        peers = hosts[1:] + hosts[:1]
        list(pool.map(_warm_up, hosts, peers))
    # The root namespace reaches every host over its one route, with the lab's keys.
    for name in [h.name for h in hosts] + [t.CORE]:
        sh(ssh_argv(name, ["true"]), timeout=30)


# --- down --------------------------------------------------------------------


def ns_ids(paths: Iterable[Path]) -> set[tuple[int, int]]:
    """(dev, inode) of the namespaces bound at these paths (those mounted)."""
    mounts = _mounted_paths()
    return {(st.st_dev, st.st_ino) for p in paths if str(p) in mounts for st in [os.stat(p)]}


def pids_in(ids: set[tuple[int, int]]) -> list[int]:
    """PIDs of every process in one of these namespaces (net, mount or UTS)."""
    if not ids:
        return []
    me = os.getpid()
    pids: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        for kind in ("net", "mnt", "uts"):
            try:
                st = os.stat(f"/proc/{entry.name}/ns/{kind}")
            except OSError:
                break
            if (st.st_dev, st.st_ino) in ids:
                pids.append(int(entry.name))
                break
    return pids


def _ns_ids(state: State) -> set[tuple[int, int]]:
    ids: set[tuple[int, int]] = set()
    mounts = _mounted_paths()
    paths = [Path("/run/netns", n) for n in state.netns]
    for name in state.mntns:
        h = t.hypervisor(name)
        paths += [h.mnt_ns, h.uts_ns]
    for p in paths:
        if str(p) in mounts:
            st = os.stat(p)
            ids.add((st.st_dev, st.st_ino))
    return ids


def lab_pids(state: State | None = None) -> list[int]:
    """PIDs of every process inside a namespace the lab created."""
    state = state or load_state()
    if state is None:
        return []
    return pids_in(_ns_ids(state))


def kill_all(
    pids: list[int],
    timeout: float = 5.0,
    signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGKILL),
) -> list[int]:
    """Signal these PIDs (TERM, then KILL what is left after `timeout`); -> survivors."""
    for sig in signals:
        wait = timeout if sig == signal.SIGTERM else 3.0
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if _alive(p)]
            if pids:
                time.sleep(0.05)
        if not pids:
            break
    return pids


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def down() -> list[str]:
    """Remove every namespace, mount and process the lab created.

    Returns what is left over (empty if clean).
    """
    with _locked():
        return _down()


def _down() -> list[str]:
    state = load_state()
    if state is None:
        return []
    left: list[str] = []
    survivors = kill_all(lab_pids(state))
    left += [f"process {p} survived SIGKILL" for p in survivors]
    mounts = _mounted_paths()
    for name in state.mntns:
        h = t.hypervisor(name)
        for p in (h.mnt_ns, h.uts_ns):
            if str(p) in mounts:
                sh(["umount", str(p)], check=False)
    if state.ns_dir_mounted and str(t.NS_DIR) in _mounted_paths():
        sh(["umount", str(t.NS_DIR)], check=False)
    # Only now: a loop device a QEMU still held would stay until it closed anyway.
    for device in loop_devices(state.volume_files):
        sh(["losetup", "--detach", device], check=False)
    for n in reversed(state.netns):
        if _netns_exists(n):
            sh(["ip", "netns", "del", n], check=False)
    if state.root_link and _link_exists(t.ROOT_LINK):
        # Normally gone with core (its peer ctl0 lived there).
        sh(["ip", "link", "del", t.ROOT_LINK], check=False)
    for d in reversed(state.created_dirs):
        with suppress(OSError):
            Path(d).rmdir()
    if state.created_run_netns:
        with suppress(OSError):
            Path("/run/netns").rmdir()
    left += _leftovers(state)
    if not left:
        shutil.rmtree(t.STATE_DIR, ignore_errors=True)
    return left


def _leftovers(state: State) -> list[str]:
    left = [f"netns {n}" for n in state.netns if _netns_exists(n)]
    mounts = _mounted_paths()
    left += [f"mount {m}" for m in mounts if m.startswith(str(t.STATE_DIR))]
    if _link_exists(t.ROOT_LINK):
        left.append(f"link {t.ROOT_LINK}")
    r = sh(["ip", "route", "show", str(t.CONTROL_ROUTE)], check=False)
    if r.stdout.strip():
        left.append(f"route {r.stdout.strip()}")
    left += [f"process {p}" for p in lab_pids(state)]
    left += [f"loop device {d} ({f})" for d, f in loop_devices(state.volume_files).items()]
    return left


# --- status ------------------------------------------------------------------


def status() -> dict[str, Any]:
    """What is up: hosts, their daemons' PIDs, addresses and VMs; and what is wrong."""
    state = load_state()
    if state is None:
        return {"up": False, "hosts": {}, "problems": []}
    problems = _health(state)
    hosts: dict[str, Any] = {}
    for name in state.hosts:
        h = t.hypervisor(name)
        vms: list[str] = []
        if _pid_alive(h.libvirtd_pidfile):
            try:
                r = run(name, ["virsh", "list", "--all", "--name"], timeout=20, check=False)
                vms = [v for v in r.stdout.split() if v]
            except CommandError:
                pass
        hosts[name] = {
            "address": str(h.address),
            "sshd": _pid_alive(h.sshd_pidfile),
            "libvirtd": _pid_alive(h.libvirtd_pidfile),
            "vms": vms,
        }
    core_route = ""
    if _netns_exists(t.CORE):
        core_route = sh(
            ["ip", "-n", t.CORE, "route", "show", str(t.PREFIX)], check=False
        ).stdout.strip()
    return {
        "up": not problems,
        "hosts": hosts,
        "core": {
            "address": str(t.CORE_ADDRESS),
            "sshd": _pid_alive(t.CORE_SSHD_PIDFILE),
            "route": core_route,
        },
        "client": str(t.CLIENT_ADDR.ip),
        "prefix": str(t.PREFIX),
        "known_hosts": str(t.KNOWN_HOSTS),
        "key": str(t.CLIENT_KEY),
        "ssh_config": str(t.SSH_CONFIG),
        "problems": problems,
    }


__all__ = [
    "LabError",
    "State",
    "down",
    "find_clashes",
    "host_argv",
    "lab_pids",
    "load_state",
    "loop_devices",
    "recording",
    "ssh_argv",
    "status",
    "up",
]
