"""The blog's migration, done by hand: the baseline glidepath is measured against.

Steps (blog: "Moving my Server with less than a second downtime"):
  1. `ssh -w 2:2` tunnel src -> dst, tun2 198.18.100.1/24 (src) and .2/24 (dst);
  2. on src: the prefix via dst's tunnel address (inbound follows the VM);
  3. on dst: table vm-out (201), `ip rule add fwmark 1 table vm-out`, default
     via src's tunnel address in vm-out, mangle PREROUTING mark for packets from
     the prefix arriving on vif+ (outbound leaves through the host the upstream
     routes the prefix to);
  4. create the destination disk at the same path and size;
  5. `virsh migrate --live --copy-storage-all --persistent --undefinesource`;
  6. switch core's route for the prefix to dst;
  7. at the first packet for the prefix arriving directly on dst's br0, drop the mark;
  8. tear the temporary path down.
Each step is a function so tests can also run a subset (e.g. no mark).
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import subprocess
import time
from dataclasses import dataclass, field

from lab import topology as t
from lab.proc import popen, run

VM_OUT_TABLE = (201, "vm-out")
FWMARK = "1"
MARK_RULE = ["-s", str(t.PREFIX), "-i", "vif+", "-j", "MARK", "--set-mark", FWMARK]


@dataclass
class Tunnel:
    """An `ssh -w` tunnel between two hosts (the ssh client runs on `src`)."""

    src: str
    dst: str
    proc: subprocess.Popen[str]
    dev: str = t.TUNNEL_DEV

    @property
    def src_ip(self) -> str:
        return str(t.TUNNEL_ADDRS[0].ip)

    @property
    def dst_ip(self) -> str:
        return str(t.TUNNEL_ADDRS[1].ip)


def _wait_for(pred: object, what: str, timeout: float, interval: float = 0.05) -> None:
    assert callable(pred)
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def _has_link(host: str, dev: str) -> bool:
    return run(host, ["ip", "link", "show", "dev", dev], check=False).returncode == 0


def open_tunnel(src: str, dst: str, *, timeout: float = 15.0) -> Tunnel:
    """`ssh -w 2:2 root@<dst>` from src; address and bring up tun2 on both ends."""
    dst_h = t.hypervisor(dst)
    num = t.TUNNEL_DEV.removeprefix("tun")
    # A tun2 left by a tunnel still shutting down would take our addresses and
    # routes with it when it goes (seen: the vm-out route vanished mid-move).
    _wait_for(
        lambda: not _has_link(src, t.TUNNEL_DEV) and not _has_link(dst, t.TUNNEL_DEV),
        "a stale tun2 to go",
        10,
    )
    proc = popen(
        src,
        [
            "ssh",
            "-N",
            "-o",
            "ExitOnForwardFailure=yes",
            "-o",
            "ServerAliveInterval=5",
            "-o",
            "ServerAliveCountMax=3",
            "-w",
            f"{num}:{num}",
            f"root@{dst_h.address}",
        ],
    )
    tun = Tunnel(src, dst, proc)
    try:
        _wait_for(
            lambda: proc.poll() is None and _has_link(src, tun.dev) and _has_link(dst, tun.dev),
            "tun2 on both ends",
            timeout,
        )
    except TimeoutError:
        close_tunnel(tun)
        err = proc.stderr.read() if proc.stderr and proc.poll() is not None else ""
        raise TimeoutError(f"ssh -w tunnel {src} -> {dst} did not come up: {err.strip()}") from None
    for host, addr in ((src, t.TUNNEL_ADDRS[0]), (dst, t.TUNNEL_ADDRS[1])):
        run(host, ["ip", "addr", "replace", str(addr), "dev", tun.dev])
        run(host, ["ip", "link", "set", tun.dev, "up"])
    run(src, ["ping", "-c", "1", "-W", "2", tun.dst_ip], timeout=10)
    return tun


def close_tunnel(tun: Tunnel) -> None:
    """Stop the tunnel's ssh client (by PID); its tun devices vanish with it."""
    if tun.proc.poll() is None:
        tun.proc.terminate()
        try:
            tun.proc.wait(5)
        except subprocess.TimeoutExpired:
            tun.proc.kill()
            tun.proc.wait(5)
    for s in (tun.proc.stdout, tun.proc.stderr):
        if s:
            s.close()
    # The server side (sshd on dst) lets go of its tun2 a little later.
    with contextlib.suppress(TimeoutError):  # open_tunnel waits again and says so
        _wait_for(
            lambda: not _has_link(tun.src, tun.dev) and not _has_link(tun.dst, tun.dev),
            "tun2 to go",
            10,
        )


def add_source_route(src: str, tun: Tunnel) -> None:
    """On the source: traffic for the prefix follows the VM through the tunnel.

    The VM's /32 via its vif wins while it still runs here; when the source
    QEMU exits, the /32 goes and this route takes over.
    """
    run(src, ["ip", "route", "replace", str(t.PREFIX), "via", tun.dst_ip, "dev", tun.dev])


def remove_source_route(src: str, tun: Tunnel) -> None:
    run(src, ["ip", "route", "del", str(t.PREFIX), "via", tun.dst_ip, "dev", tun.dev], check=False)


def ensure_vm_out_table(host: str) -> None:
    """`echo 201 vm-out >> /etc/iproute2/rt_tables` (the host's own copy), once."""
    path = t.host_path(host, "/etc/iproute2/rt_tables")
    text = path.read_text()
    if not re.search(r"^\s*201\s+vm-out\s*$", text, re.M):
        path.write_text(text + ("" if text.endswith("\n") else "\n") + "201\tvm-out\n")


def add_return_path(dst: str, tun: Tunnel, *, mark: bool = True) -> None:
    """On the destination: marked packets from the prefix leave via the source's tunnel end."""
    ensure_vm_out_table(dst)
    if "lookup vm-out" not in run(dst, ["ip", "rule", "show"]).stdout:
        run(dst, ["ip", "rule", "add", "fwmark", FWMARK, "table", "vm-out"])
    run(
        dst,
        ["ip", "route", "replace", "default", "via", tun.src_ip, "dev", tun.dev, "table", "vm-out"],
    )
    if mark:
        add_mark(dst)


def add_mark(dst: str) -> None:
    if (
        run(
            dst, ["iptables", "-w", "-t", "mangle", "-C", "PREROUTING", *MARK_RULE], check=False
        ).returncode
        != 0
    ):
        run(dst, ["iptables", "-w", "-t", "mangle", "-A", "PREROUTING", *MARK_RULE])


def remove_mark(dst: str) -> None:
    """Drop the mark rule (the blog flushes PREROUTING; we delete only our rule)."""
    while (
        run(
            dst, ["iptables", "-w", "-t", "mangle", "-D", "PREROUTING", *MARK_RULE], check=False
        ).returncode
        == 0
    ):
        pass


def remove_return_path(dst: str) -> None:
    remove_mark(dst)
    for _ in range(8):
        if (
            run(
                dst, ["ip", "rule", "del", "fwmark", FWMARK, "table", "vm-out"], check=False
            ).returncode
            != 0
        ):
            break
    run(dst, ["ip", "route", "flush", "table", "vm-out"], check=False)


def switch_core(host: str) -> None:
    """What the provider does on request: route the prefix to `host`."""
    run(t.CORE, ["ip", "route", "replace", str(t.PREFIX), "via", str(t.hypervisor(host).address)])


def core_route() -> str:
    """The host core routes the prefix to now (by name)."""
    out = run(t.CORE, ["ip", "route", "show", str(t.PREFIX)]).stdout
    m = re.search(r"via (\S+)", out)
    for n in t.host_names(t.MAX_HOSTS):
        if m and str(t.hypervisor(n).address) == m.group(1):
            return n
    raise RuntimeError(f"core routes {t.PREFIX} to nothing known: {out!r}")


def prepare_disk(vm: str, src: str, dst: str, disk_path: str | None = None) -> str:
    """Create the destination disk at the same path and exact size (bigger fails here)."""
    path = disk_path or f"/var/lib/libvirt/images/{vm}.img"
    size = t.host_path(src, path).stat().st_size
    run(dst, ["qemu-img", "create", "-q", "-f", "raw", path, str(size)])
    return path


def virsh_migrate(
    vm: str, src: str, dst: str, *, timeout: float = 300, auto_converge: bool = False
) -> float:
    """The blog's `virsh migrate`, run on the source; returns its wall time.
    `auto_converge`: with glidepath's default flag added (bench/hand_server.py)."""
    uri = t.hypervisor(dst).libvirt_uri
    converge = ["--auto-converge"] if auto_converge else []
    t0 = time.monotonic()
    run(
        src,
        [
            "virsh",
            "migrate",
            "--live",
            "--copy-storage-all",
            "--persistent",
            "--undefinesource",
            *converge,
            vm,
            uri,
        ],
        timeout=timeout,
    )
    return time.monotonic() - t0


def parse_jobinfo(text: str) -> dict[str, str]:
    """`virsh domjobinfo` output -> {'Total downtime': '123 ms', ...}."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            out[k.strip()] = v.strip()
    return out


def jobinfo_ms(v: str | None) -> float | None:
    if not v:
        return None
    m = re.match(r"([\d.]+)\s*ms", v)
    return float(m.group(1)) if m else None


def wait_first_direct_packet(dst: str, switch: object, timeout: float = 10.0) -> float | None:
    """Run `switch()` while tcpdump waits on dst's br0 for the first inbound packet
    for the prefix; return seconds from the switch to that packet (None: none within timeout)."""
    assert callable(switch)
    # --immediate-mode: without it libpcap hands the packet over only when its
    # buffer timeout fires (~100 ms here), and that much later the mark goes.
    td = popen(
        dst,
        [
            "tcpdump",
            "-i",
            t.UPLINK,
            "-n",
            "-l",
            "--immediate-mode",
            "-c",
            "1",
            "-Q",
            "in",
            "dst",
            "net",
            str(t.PREFIX),
        ],
    )
    try:
        assert td.stderr is not None
        fd = td.stderr.fileno()
        seen = b""
        deadline = time.monotonic() + 5
        # Wait until it listens (else the first packet may be missed); raw reads,
        # since a buffered readline() can swallow the line select() saw.
        while b"listening on" not in seen and time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 0.1)
            if r:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                seen += chunk
        if b"listening on" not in seen:
            raise RuntimeError(f"tcpdump on {dst} did not start: {seen.decode(errors='replace')}")
        t_switch = time.monotonic()
        switch()
        # Block on tcpdump's (line-buffered) output rather than polling wait(),
        # whose back-off sleeps added up to 50 ms to the measurement and the flush.
        assert td.stdout is not None
        out = td.stdout.fileno()
        deadline = t_switch + timeout
        while (left := deadline - time.monotonic()) > 0:
            r, _, _ = select.select([out], [], [], left)
            if r:
                return time.monotonic() - t_switch if os.read(out, 4096) else None
        return None
    finally:
        if td.poll() is None:
            td.kill()
            td.wait(5)
        for s in (td.stdout, td.stderr):
            if s:
                s.close()


@dataclass
class HandMigration:
    """Timings of one hand-run migration (seconds unless named _ms)."""

    vm: str
    src: str
    dst: str
    migrate_s: float
    libvirt_downtime_ms: float | None
    libvirt_elapsed_ms: float | None
    migrate_started_at: float  # time.time() when `virsh migrate` started
    switched_at: float  # time.time() of the core switch
    first_direct_packet_s: float | None  # after the switch; None: none seen in time
    total_s: float
    jobinfo: dict[str, str] = field(default_factory=dict)


def ensure_vif_route_script(host: str) -> None:
    """Put the lab's vif-route script back where a test or a stack removed it (the hand
    procedure needs it). glidepath's last owner on a host restores the one it found (kept
    at `<script>.before-glidepath`); a script removed by hand, or one no stack found, is
    not."""
    from lab import config

    path = t.hypervisor(host).state_dir / "etc-libvirt" / "scripts" / "vif-route"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(config.vif_route_script())
        path.chmod(0o755)


def hand_migrate(
    vm: str,
    src: str,
    dst: str,
    *,
    disk_path: str | None = None,
    first_packet_timeout: float = 10.0,
    migrate_timeout: float = 300.0,
    max_downtime_ms: int | None = None,
) -> HandMigration:
    """Move `vm` from src to dst the blog's way and return the timings.

    `max_downtime_ms` is the careful operator's tuning: `virsh migrate-setmaxdowntime`
    before `virsh migrate` (QEMU keeps it for the next migration: its downtime-limit
    reads 100 ms during a move after setting 100). None is the blog as written: QEMU's
    default, 300 ms.

    On failure the temporary path is torn down and the error re-raised; the VM
    stays wherever libvirt left it (on src if `virsh migrate` failed).
    """
    t0 = time.monotonic()
    for host in (src, dst):
        ensure_vif_route_script(host)
    tun = open_tunnel(src, dst)
    try:
        add_source_route(src, tun)
        add_return_path(dst, tun, mark=True)
        prepare_disk(vm, src, dst, disk_path)
        if max_downtime_ms is not None:
            run(src, ["virsh", "migrate-setmaxdowntime", vm, str(max_downtime_ms)])
        migrate_started_at = time.time()
        migrate_s = virsh_migrate(vm, src, dst, timeout=migrate_timeout)
        info = parse_jobinfo(
            run(dst, ["virsh", "domjobinfo", vm, "--completed"], check=False).stdout
        )
        switched: list[float] = []

        def switch() -> None:
            switched.append(time.time())
            switch_core(dst)

        first = wait_first_direct_packet(dst, switch, first_packet_timeout)
        # The first direct packet shows the upstream now delivers to dst: drop the mark.
        remove_mark(dst)
    finally:
        remove_source_route(src, tun)
        remove_return_path(dst)
        close_tunnel(tun)
    return HandMigration(
        vm=vm,
        src=src,
        dst=dst,
        migrate_s=round(migrate_s, 3),
        libvirt_downtime_ms=jobinfo_ms(info.get("Total downtime")),
        libvirt_elapsed_ms=jobinfo_ms(info.get("Time elapsed")),
        migrate_started_at=migrate_started_at,
        switched_at=switched[0],
        first_direct_packet_s=None if first is None else round(first, 3),
        total_s=round(time.monotonic() - t0, 3),
        jobinfo=info,
    )
