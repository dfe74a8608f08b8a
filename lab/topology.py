"""Names, addresses and paths of the lab: the one place other code reads them from.

Everything here is plain data; nothing touches the machine.

Layout (hypervisor i: old=1, new=2, h3=3, ...)::

    root ns  glab0 198.18.0.1/30 --- ctl0 198.18.0.2/30  core
    client   eth0 198.51.100.2/24 --- cl0 198.51.100.1/24  core
    <host>   br0 198.18.<i>.2/24 --- up-<host> 198.18.<i>.1/24  core

core routes 203.0.113.0/29 to old at start and drops packets whose source is
in that prefix unless they arrive from the host the prefix is routed to.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

# --- state and cache -------------------------------------------------------

#: What the lab created: keys, known_hosts, per-host dirs, pid files, state.json.
STATE_DIR = Path("/var/lib/glidepath-lab")
#: Survives `lab down`: the guest image and each host's libvirt capability cache.
CACHE_DIR = Path("/var/cache/glidepath-lab")
GUEST_DIR = CACHE_DIR / "guest"
#: Persistent mount/UTS namespace files (a private bind mount of its own).
NS_DIR = STATE_DIR / "ns"
STATE_FILE = STATE_DIR / "state.json"

#: The lab's SSH client key (ed25519); its public half is authorized on every host.
CLIENT_KEY = STATE_DIR / "id_ed25519"
CLIENT_PUBKEY = STATE_DIR / "id_ed25519.pub"
#: Host keys of every host (hypervisors and core), by address and by name.
KNOWN_HOSTS = STATE_DIR / "known_hosts"
#: ssh_config for `ssh -F`: user root, the lab key, strict host-key checking.
SSH_CONFIG = STATE_DIR / "ssh_config"

# --- address plan ----------------------------------------------------------

#: Ranges the lab uses; `lab up` refuses if the machine already uses any of them.
LAB_RANGES = (
    ipaddress.IPv4Network("198.18.0.0/15"),
    ipaddress.IPv4Network("198.51.100.0/24"),
    ipaddress.IPv4Network("203.0.113.0/24"),
)
#: The only route the lab adds to the root namespace.
CONTROL_ROUTE = ipaddress.IPv4Network("198.18.0.0/15")
ROOT_LINK = "glab0"
ROOT_ADDR = ipaddress.IPv4Interface("198.18.0.1/30")
CORE_CTL_LINK = "ctl0"
CORE_CTL_ADDR = ipaddress.IPv4Interface("198.18.0.2/30")

#: The routed prefix the VMs live in (what a provider would route to a server).
PREFIX = ipaddress.IPv4Network("203.0.113.0/29")

CLIENT = "client"
CORE = "core"
CLIENT_LINK = "eth0"
CLIENT_ADDR = ipaddress.IPv4Interface("198.51.100.2/24")
CORE_CLIENT_LINK = "cl0"
CORE_CLIENT_ADDR = ipaddress.IPv4Interface("198.51.100.1/24")

#: Tunnel addresses of the blog's `ssh -w 2:2` link (source end, destination end).
TUNNEL_DEV = "tun2"
TUNNEL_ADDRS = (
    ipaddress.IPv4Interface("198.18.100.1/24"),
    ipaddress.IPv4Interface("198.18.100.2/24"),
)

MAX_HOSTS = 8
UPLINK = "br0"
#: Ports QEMU listens on for incoming migrations (memory and NBD disk copy).
MIGRATION_PORTS = (49152, 49215)


def host_names(count: int = 2) -> tuple[str, ...]:
    """Hypervisor names for a lab of `count` hosts: old, new, h3, h4, ..."""
    if not 2 <= count <= MAX_HOSTS:
        raise ValueError(f"hosts must be between 2 and {MAX_HOSTS}, got {count}")
    return ("old", "new", *tuple(f"h{i}" for i in range(3, count + 1)))


def host_index(name: str) -> int:
    """1 for old, 2 for new, i for h<i>."""
    if name == "old":
        return 1
    if name == "new":
        return 2
    if name.startswith("h") and name[1:].isdigit() and 3 <= int(name[1:]) <= MAX_HOSTS:
        return int(name[1:])
    raise ValueError(f"not a lab hypervisor: {name!r}")


@dataclass(frozen=True)
class Hypervisor:
    """One hypervisor namespace and its addresses."""

    name: str
    index: int

    @property
    def address(self) -> ipaddress.IPv4Address:
        """Uplink address (sshd, libvirtd migration): 198.18.<i>.2."""
        return ipaddress.IPv4Address(f"198.18.{self.index}.2")

    @property
    def uplink(self) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(f"198.18.{self.index}.2/24")

    @property
    def gateway(self) -> ipaddress.IPv4Interface:
        """core's side of the uplink (the host's default gateway)."""
        return ipaddress.IPv4Interface(f"198.18.{self.index}.1/24")

    @property
    def core_link(self) -> str:
        return f"up-{self.name}"

    @property
    def libvirt_uri(self) -> str:
        """URI other hosts (and Pulumi in the root namespace) use to reach its libvirtd."""
        return f"qemu+ssh://root@{self.address}/system"

    @property
    def state_dir(self) -> Path:
        return STATE_DIR / "hosts" / self.name

    @property
    def mnt_ns(self) -> Path:
        return NS_DIR / f"mnt-{self.name}"

    @property
    def uts_ns(self) -> Path:
        return NS_DIR / f"uts-{self.name}"

    @property
    def net_ns(self) -> Path:
        return Path("/run/netns") / self.name

    @property
    def sshd_pidfile(self) -> Path:
        return self.state_dir / "sshd.pid"

    @property
    def libvirtd_pidfile(self) -> Path:
        """As seen from the root namespace (inside: /run/libvirt/libvirtd.pid)."""
        return self.state_dir / "run-libvirt" / "libvirtd.pid"


def hypervisor(name: str) -> Hypervisor:
    return Hypervisor(name, host_index(name))


def hypervisors(count: int = 2) -> tuple[Hypervisor, ...]:
    return tuple(hypervisor(n) for n in host_names(count))


#: core's sshd (for the cutover backend): 198.18.0.2:22, reachable from the root namespace.
CORE_ADDRESS = CORE_CTL_ADDR.ip
CORE_STATE_DIR = STATE_DIR / "core"
CORE_SSHD_PIDFILE = CORE_STATE_DIR / "sshd.pid"

OLD = hypervisor("old")
NEW = hypervisor("new")

#: Per-host bind mounts: path inside the host -> subdirectory of the host's state dir.
HOST_BINDS: tuple[tuple[str, str], ...] = (
    ("/etc/libvirt", "etc-libvirt"),
    ("/run/libvirt", "run-libvirt"),
    ("/var/lib/libvirt", "var-lib-libvirt"),
    ("/var/log/libvirt", "log-libvirt"),
    ("/root/.ssh", "root-ssh"),
    ("/etc/hosts", "hosts"),
    ("/etc/iproute2/rt_tables", "rt_tables"),
    # glidepath's own state on a host (which stacks hold a shared artifact: owners.py).
    ("/var/lib/glidepath", "var-lib-glidepath"),
    # What a host restores at boot (providers/boot): glidepath's records, and the sysctl
    # files the OS applies (the machine's own are masked on lab hosts, which `lab reboot`
    # applies as a host's boot does).
    ("/etc/glidepath", "etc-glidepath"),
    ("/etc/sysctl.d", "etc-sysctl.d"),
    # Runtime state, emptied by `lab reboot` (/run/libvirt above is the other part).
    ("/run/glidepath", "run-glidepath"),
)
#: What a reboot empties: the host's /run (tmpfs on a real server).
HOST_RUN_DIRS = ("run-libvirt", "run-glidepath")
#: The machine's root bashrc, which bash reads for every command sshd runs: masked on lab
#: hosts (config.LAB_BASHRC).
ROOT_BASHRC = "/root/.bashrc"
#: Kept in CACHE_DIR so QEMU's capability probe (5-8 s) survives `lab down`.
HOST_CACHE_BIND = "/var/cache/libvirt"


def host_cache_dir(name: str) -> Path:
    return CACHE_DIR / "hosts" / name / "libvirt"


def host_path(host: str, path: str | Path) -> Path:
    """Where a path inside a hypervisor's bind mounts lives as seen from the root namespace.

    `host_path("old", "/var/lib/libvirt/images/vm1.img")` ->
    `/var/lib/glidepath-lab/hosts/old/var-lib-libvirt/images/vm1.img`.
    Paths outside the per-host mounts are shared and returned unchanged.
    """
    p = Path(path)
    h = hypervisor(host)
    if p.is_relative_to(HOST_CACHE_BIND):
        return host_cache_dir(host) / p.relative_to(HOST_CACHE_BIND)
    for inside, sub in HOST_BINDS:
        if p == Path(inside) or p.is_relative_to(inside):
            return h.state_dir / sub / p.relative_to(inside)
    return p


def disk_file(host: str, path: str) -> Path:
    """Where a VM disk's bytes are, seen from the root namespace: a disk file through the
    host's bind mounts (`host_path`); a lab volume, `/dev/<vg>/<lv>` (lab/blockdev.py), in
    the file under its loop device."""
    parts = Path(path).parts
    if parts[:2] == ("/", "dev"):
        if len(parts) != 4:
            raise ValueError(f"{path}: a lab volume is /dev/<vg>/<lv>")
        return hypervisor(host).state_dir / "volumes" / parts[2] / f"{parts[3]}.img"
    return host_path(host, path)


# --- VMs -------------------------------------------------------------------

#: The blog's vif-route numbering here: vifN <-> 203.0.113.(N+2). .0 and .1 stay
#: unused so every VM address is inside the /29 (vif0..vif5).
VIF_COUNT = 6


def vm_ip(vif: int) -> ipaddress.IPv4Address:
    """Address routed to tap `vif<vif>` by the lab's vif-route script."""
    if not 0 <= vif < VIF_COUNT:
        raise ValueError(f"vif index must be 0..{VIF_COUNT - 1}, got {vif}")
    return PREFIX.network_address + 2 + vif


def in_lab(address: str | ipaddress.IPv4Address) -> bool:
    """True if `address` belongs to the lab's ranges (probe targets must)."""
    ip = ipaddress.IPv4Address(str(address))
    return any(ip in net for net in LAB_RANGES)
