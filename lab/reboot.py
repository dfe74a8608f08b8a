"""`python -m lab reboot HOST`: a hypervisor restarted as a server is, power cut and all.

    power_off(host)   every process of the host ends (SIGKILL: its VMs too, as at a power
                      cut), its network namespace goes (addresses, links, rules, routes,
                      iptables, sysctls, tunN), its mount namespace and its /run with it
    boot(off)         what the host's OS does as it starts: the network its own config
                      brings up (br0, its address, the default route; `host_network`),
                      the files in /etc/sysctl.d applied (systemd-sysctl's part), then
                      glidepath's boot step if installed (the oneshot unit's part:
                      /usr/local/lib/glidepath/boot-restore restore), then sshd and
                      libvirtd, which starts the domains marked autostart

What a real server keeps across a reboot is its disk: the host's state directory (its
/etc/libvirt, /var/lib/libvirt with the VMs' disks, /etc/glidepath, /etc/sysctl.d,
/var/lib/glidepath, rt_tables). The provider's router (core) keeps routing the host's
addresses to it: its routes via the host's link come back with the link.
"""

from __future__ import annotations

import json
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from lab import lifecycle
from lab import topology as t
from lab.lifecycle import LabError
from lab.proc import run, sh

#: glidepath's boot step, where glidepath installs it (providers/boot/persist.RESTORER);
#: /usr/local/lib is shared by the lab's hosts.
RESTORER = Path("/usr/local/lib/glidepath/boot-restore")
SYSCTL_DIR = "/etc/sysctl.d"


@dataclass
class PoweredOff:
    """A host whose power was cut: what `boot` needs to bring it back."""

    host: str
    #: core's routes via the host (`ip -j route` entries): the provider's configuration,
    #: which a server's reboot does not change.
    core_routes: list[dict[str, object]] = field(default_factory=list)
    killed: int = 0
    seconds: float = 0.0


@dataclass
class Booted:
    host: str
    seconds: float
    restore_output: str
    sysctl_files: list[str]


def _core_routes(h: t.Hypervisor) -> list[dict[str, object]]:
    shown = sh(["ip", "-n", t.CORE, "-j", "-4", "route", "show", "dev", h.core_link], check=False)
    return [r for r in json.loads(shown.stdout or "[]") if r.get("gateway")]


def power_off(host: str) -> PoweredOff:
    """Cut the host's power: see the module docstring."""
    start = time.monotonic()
    h = t.hypervisor(host)
    with lifecycle._locked():
        state = lifecycle.load_state()
        if state is None or host not in state.hosts:
            raise LabError(f"{host} is not a host of the lab that is up")
        routes = _core_routes(h)
        pids = lifecycle.pids_in(lifecycle.ns_ids([h.net_ns, h.mnt_ns, h.uts_ns]))
        left = lifecycle.kill_all(pids, signals=(signal.SIGKILL,))
        if left:
            raise LabError(f"{host}: processes {left} survived SIGKILL")
        for p in (h.mnt_ns, h.uts_ns):
            sh(["umount", str(p)], check=False)
        # The uplink goes with the namespace, but the kernel removes core's end of the
        # veth a moment later; the boot would then find it still there. Cut it now.
        sh(["ip", "-n", t.CORE, "link", "del", h.core_link], check=False)
        sh(["ip", "netns", "del", host])
        for sub in t.HOST_RUN_DIRS:
            directory = h.state_dir / sub
            shutil.rmtree(directory, ignore_errors=True)
            directory.mkdir(parents=True, exist_ok=True)
    return PoweredOff(host, routes, len(pids), round(time.monotonic() - start, 2))


def boot(off: PoweredOff) -> Booted:
    """Start the host again as its OS would: see the module docstring."""
    start = time.monotonic()
    h = t.hypervisor(off.host)
    with lifecycle._locked():
        state = lifecycle.load_state()
        if state is None:
            raise LabError("the lab is not up")
        sh(["ip", "netns", "add", h.name])
        sh(["ip", "-n", h.name, "link", "set", "lo", "up"])
        lifecycle.host_network(h)
        for route in off.core_routes:
            argv = ["ip", "-n", t.CORE, "route", "replace", str(route["dst"])]
            argv += ["via", str(route["gateway"]), "dev", h.core_link]
            if route.get("metric") is not None:
                argv += ["metric", str(route["metric"])]
            sh(argv)
        lifecycle.host_mounts(state, h)
        state.save()
    files = sorted(
        p.name for p in (h.state_dir / "etc-sysctl.d").glob("*.conf") if not p.name.startswith(".")
    )
    for name in files:
        run(h.name, ["sysctl", "-q", "-p", f"{SYSCTL_DIR}/{name}"], timeout=30)
    restored = ""
    if RESTORER.exists():
        done = run(h.name, ["python3", str(RESTORER), "restore"], check=False, timeout=120)
        restored = done.stdout + done.stderr
        if done.returncode != 0:
            # A server boots on with a failed unit; the report shows it.
            restored += f"\n(boot-restore exited {done.returncode})"
    lifecycle.start_hypervisor_daemons(h)
    return Booted(off.host, round(time.monotonic() - start, 2), restored, files)


def reboot(host: str) -> tuple[PoweredOff, Booted]:
    off = power_off(host)
    return off, boot(off)
