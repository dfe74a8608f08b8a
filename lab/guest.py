"""The lab's guest: image build (kernel + busybox initramfs), domain XML, disk records.

One image serves every VM: the address, prefix and name come from the kernel
command line (`gp.ip=203.0.113.2 gp.prefix=203.0.113.0/29 gp.name=vm1`).
Inside, the guest routes like the blog's VMs (/32 on eth0, the prefix on-link,
default via its own address), answers ICMP, serves HTTP on :80 and appends
one 512-byte record per write to /dev/vda: sector N holds
`GPSEQ <N> <epoch seconds> <uptime seconds> <name>`, each write fsynced.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from lab import topology as t
from lab.proc import run

#: Load order matters: another order gives "Unknown symbol" and no eth0.
VIRTIO_MODULES = (
    "virtio_ring",
    "virtio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "failover",
    "net_failover",
    "virtio_net",
    "virtio_blk",
)
#: The ACPI power button as an input device: a graceful shutdown (`virsh shutdown`,
#: glidepath's `on_remove: shutdown`) powers the guest off.
ACPI_MODULES = ("evdev", "button")
GUEST_MODULES = VIRTIO_MODULES + ACPI_MODULES

RECORD_SIZE = 512
WRITE_INTERVAL_S = 0.2
READY_MARK = "GP-READY"

KERNEL = t.GUEST_DIR / "vmlinuz"
INITRD = t.GUEST_DIR / "initrd.img"
IMAGE_META = t.GUEST_DIR / "image.json"
KVM_META = t.GUEST_DIR / "kvm.json"

INIT_SCRIPT = r"""#!/bin/busybox sh
# glidepath lab guest /init (lab/guest.py)
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
IP=; PREFIX=; NAME=guest; PROBE=; NOACPID=; DIRTY=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    gp.ip=*) IP=${arg#gp.ip=} ;;
    gp.prefix=*) PREFIX=${arg#gp.prefix=} ;;
    gp.name=*) NAME=${arg#gp.name=} ;;
    gp.probe=*) PROBE=1 ;;
    gp.noacpid=*) NOACPID=1 ;;
    gp.dirty=*) DIRTY=${arg#gp.dirty=} ;;
  esac
done
if [ -n "$PROBE" ]; then
  echo "GP-BOOT-OK"
  poweroff -f
fi
for m in __MODULES__; do
  insmod /lib/modules/$m.ko || echo "gp: insmod $m failed"
done
hostname "$NAME"
# The power button (ACPI, `virsh shutdown`): its first input event powers the guest off,
# unless gp.noacpid (a guest that ignores it, as some do).
if [ -z "$NOACPID" ]; then
  for ev in /sys/class/input/event*; do
    if grep -q "Power Button" "$ev/device/name" 2>/dev/null; then
      ( head -c 24 "/dev/input/${ev##*/}" >/dev/null \
        && echo "GP-POWEROFF $(cat /proc/uptime)" && sync && poweroff -f ) &
    fi
  done
fi
i=0
while [ ! -e /sys/class/net/eth0 ] || [ ! -b /dev/vda ]; do
  i=$((i+1)); [ $i -gt 100 ] && break; sleep 0.1
done
ip link set lo up
ip link set eth0 up
ip addr add "$IP/32" dev eth0
ip route add "$PREFIX" dev eth0
ip route add default via "$IP" dev eth0
mkdir -p /www/cgi-bin
echo "glidepath guest $NAME $IP" > /www/index.html
# A long-lived TCP stream for the probe (lab/probe.py --tcp): the numbers 1, 2, 3, ...
# one per line, written as fast as the client reads them.
printf '#!/bin/sh\necho "Content-Type: text/plain"\necho\nexec seq 1 999999999\n' \
  > /www/cgi-bin/stream
chmod 755 /www/cgi-bin/stream
httpd -p 80 -h /www
writer() {
  seq=0
  while :; do
    read up idle < /proc/uptime
    printf 'GPSEQ %d %s %s %s\n' "$seq" "$(date +%s)" "$up" "$NAME" > /tmp/rec
    # conv=sync pads to one 512-byte sector; fsync makes the write durable.
    dd if=/tmp/rec of=/dev/vda bs=512 count=1 seek="$seq" conv=notrunc,sync,fsync 2>/dev/null \
      || echo "gp: write $seq failed"
    seq=$((seq+1))
    sleep __INTERVAL__
  done
}
writer &
# gp.dirty=N: rewrite N MiB of random bytes in RAM without pause, as a busy database
# does (random, not zeros: QEMU sends a zero page as a flag, not as 4 KiB).
if [ -n "$DIRTY" ]; then
  dd if=/dev/urandom of=/tmp/dirty-src bs=1M count="$DIRTY" 2>/dev/null
  ( while :; do dd if=/tmp/dirty-src of=/tmp/dirty bs=1M conv=notrunc 2>/dev/null; done ) &
fi
echo "__READY__ name=$NAME ip=$IP"
while :; do sleep 3600; done
"""


def init_script() -> str:
    return (
        INIT_SCRIPT.replace("__MODULES__", " ".join(GUEST_MODULES))
        .replace("__INTERVAL__", str(WRITE_INTERVAL_S))
        .replace("__READY__", READY_MARK)
    )


# --- initramfs ---------------------------------------------------------------


class _Cpio:
    """Minimal newc writer (lets us add /dev/console without mknod)."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.ino = 1

    def _entry(
        self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)
    ) -> None:
        nb = name.encode() + b"\0"
        fields = [self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(nb), 0]
        self.ino += 1
        self.buf.write(b"070701" + b"".join(b"%08x" % f for f in fields) + nb)
        self.buf.write(b"\0" * (-(110 + len(nb)) % 4))
        self.buf.write(data)
        self.buf.write(b"\0" * (-len(data) % 4))

    def dir(self, name: str) -> None:
        self._entry(name, 0o040755)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._entry(name, 0o100000 | perm, data)

    def chardev(self, name: str, major: int, minor: int) -> None:
        self._entry(name, 0o020600, rdev=(major, minor))

    def close(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        self.buf.write(b"\0" * (-self.buf.tell() % 512))
        return self.buf.getvalue()


def _kernel_version() -> str:
    kernels = sorted(glob.glob("/boot/vmlinuz-*-amd64"))
    for k in reversed(kernels):
        ver = k.removeprefix("/boot/vmlinuz-")
        if Path("/lib/modules", ver).is_dir():
            return ver
    raise RuntimeError("no /boot/vmlinuz-*-amd64 with modules: install linux-image-amd64")


def build_initramfs(kernel_version: str) -> bytes:
    moddir = Path("/lib/modules", kernel_version)
    c = _Cpio()
    for d in (
        "bin",
        "sbin",
        "usr",
        "usr/bin",
        "usr/sbin",
        "proc",
        "sys",
        "dev",
        "tmp",
        "lib",
        "lib/modules",
        "www",
    ):
        c.dir(d)
    c.chardev("dev/console", 5, 1)
    c.file("bin/busybox", Path("/bin/busybox").read_bytes(), 0o755)
    c.file("init", init_script().encode(), 0o755)
    for m in GUEST_MODULES:
        found = list(moddir.rglob(f"{m}.ko"))
        if not found:
            raise RuntimeError(f"module {m}.ko not found under {moddir}")
        c.file(f"lib/modules/{m}.ko", found[0].read_bytes())
    return c.close()


def ensure_image() -> tuple[Path, Path]:
    """Build (or reuse) the cached kernel + initramfs; returns (kernel, initrd).

    They live in CACHE_DIR, outside the per-host bind mounts, so every host
    (and a migrated VM's destination) sees them at the same path.
    """
    ver = _kernel_version()
    want = {
        "kernel": ver,
        "init": hashlib.sha256(init_script().encode()).hexdigest(),
        "busybox": os.stat("/bin/busybox").st_mtime_ns,
    }
    try:
        if json.loads(IMAGE_META.read_text()) == want and KERNEL.exists() and INITRD.exists():
            return KERNEL, INITRD
    except (OSError, ValueError):
        pass
    t.GUEST_DIR.mkdir(parents=True, exist_ok=True)
    tmp = INITRD.with_suffix(".tmp")
    tmp.write_bytes(build_initramfs(ver))
    os.replace(tmp, INITRD)
    ktmp = KERNEL.with_suffix(".tmp")
    ktmp.write_bytes(Path(f"/boot/vmlinuz-{ver}").read_bytes())
    os.replace(ktmp, KERNEL)
    IMAGE_META.write_text(json.dumps(want) + "\n")
    return KERNEL, INITRD


# --- KVM detection -----------------------------------------------------------


def kvm_usable(timeout: float = 8.0) -> bool:
    """True if a stock kernel actually boots under KVM here (cached per kernel).

    /dev/kvm can exist yet be a paravirtual flavour on which a stock Debian
    kernel hangs in its decompressor, so boot the guest image once and look
    for its marker on the serial line.
    """
    kernel, initrd = ensure_image()
    key = _kernel_version()
    try:
        meta = json.loads(KVM_META.read_text())
        if meta.get("kernel") == key:
            return bool(meta["usable"])
    except (OSError, ValueError, KeyError):
        pass
    usable = False
    try:
        with open("/dev/kvm", "rb+"):
            pass
        cp = subprocess.run(
            [
                "qemu-system-x86_64",
                "-accel",
                "kvm",
                "-m",
                "128",
                "-nographic",
                "-no-reboot",
                "-nodefaults",
                "-serial",
                "stdio",
                "-kernel",
                str(kernel),
                "-initrd",
                str(initrd),
                "-append",
                "console=ttyS0 gp.probe=1 panic=-1",
            ],
            capture_output=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        usable = b"GP-BOOT-OK" in cp.stdout
    except (OSError, subprocess.TimeoutExpired):
        usable = False
    t.GUEST_DIR.mkdir(parents=True, exist_ok=True)
    KVM_META.write_text(json.dumps({"kernel": key, "usable": usable}) + "\n")
    return usable


# --- domain XML --------------------------------------------------------------


@dataclass(frozen=True)
class VmSpec:
    """One lab VM: name, routed vif index (its address follows), sizes."""

    name: str
    vif: int = 0
    memory_mib: int = 128
    disk_mib: int = 64
    dirty_mib: int = 0  # > 0: the guest rewrites this much RAM without pause (gp.dirty)

    @property
    def ip(self) -> str:
        return str(t.vm_ip(self.vif))

    @property
    def tap(self) -> str:
        return f"vif{self.vif}"

    @property
    def mac(self) -> str:
        return f"52:54:00:67:70:{self.vif:02x}"

    @property
    def disk_path(self) -> str:
        """Same path on every host (each host's own /var/lib/libvirt)."""
        return f"/var/lib/libvirt/images/{self.name}.img"

    @property
    def console_log(self) -> str:
        return console_log_path(self.name)


def domain_xml(
    vm: VmSpec,
    *,
    domain_type: str = "qemu",
    kernel: str = str(KERNEL),
    initrd: str = str(INITRD),
    prefix: str = str(t.PREFIX),
    script: str = "/etc/libvirt/scripts/vif-route",
) -> str:
    """libvirt domain XML for a lab VM (pure), from the same generator glidepath's
    VmPlacement uses. domain_type 'qemu' (TCG) or 'kvm'."""
    from providers.migration.domain import Disk, DomainSpec
    from providers.migration.domain import domain_xml as render

    if domain_type not in ("qemu", "kvm"):
        raise ValueError(f"domain_type must be 'qemu' or 'kvm', got {domain_type!r}")
    cmdline = f"console=ttyS0 panic=-1 gp.ip={vm.ip} gp.prefix={prefix} gp.name={vm.name}"
    if vm.dirty_mib:
        cmdline += f" gp.dirty={vm.dirty_mib}"
    return render(
        DomainSpec(
            name=vm.name,
            memory_mib=vm.memory_mib,
            vcpus=1,
            vif=vm.tap,
            mac=vm.mac,
            disks=(Disk(vm.disk_path, vm.disk_mib, "vda"),),
            domain_type=domain_type,
            kernel=kernel,
            initrd=initrd,
            cmdline=cmdline,
            vif_script=script,
        )
    )


# --- VM helpers on lab hosts -------------------------------------------------


def create_disk(host: str, path: str, size_bytes: int) -> None:
    run(host, ["qemu-img", "create", "-q", "-f", "raw", path, str(size_bytes)])


#: The guest writes record N at sector N, 5 a second: its first 8 MiB last for hours.
WRITER_MIB = 8


def create_random_disk(host: str, path: str, size_mib: int) -> None:
    """A raw disk full of incompressible data past the writer's area, so a migration
    has real bytes to copy (glidepath creates a disk only where none exists)."""
    run(host, ["qemu-img", "create", "-q", "-f", "raw", path, f"{size_mib}M"], timeout=30)
    run(
        host,
        [
            "dd", "if=/dev/urandom", f"of={path}", "bs=1M", f"seek={WRITER_MIB}",
            f"count={size_mib - WRITER_MIB}", "conv=notrunc", "status=none",
        ],
        timeout=300,
    )  # fmt: skip


def disk_size(host: str, path: str) -> int:
    return t.disk_file(host, path).stat().st_size


def start_vm(host: str, vm: VmSpec, *, wait: float = 60.0) -> None:
    """Create the disk, define and start `vm` on `host`, wait for its ready mark."""
    ensure_image()
    dtype = "kvm" if kvm_usable() else "qemu"
    log = t.host_path(host, vm.console_log)
    if log.exists():
        log.unlink()
    create_disk(host, vm.disk_path, vm.disk_mib * 1024 * 1024)
    run(host, ["virsh", "define", "/dev/stdin"], input=domain_xml(vm, domain_type=dtype))
    run(host, ["virsh", "start", vm.name], timeout=60)
    wait_ready(host, vm, wait)


def wait_ready(host: str, vm: VmSpec, timeout: float = 60.0) -> None:
    log = t.host_path(host, vm.console_log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if READY_MARK in log.read_text(errors="replace"):
                return
        except FileNotFoundError:
            pass
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no console log)"
    raise TimeoutError(f"{vm.name} on {host} not ready after {timeout} s; console:\n{tail}")


def console_log_path(name: str) -> str:
    """Where a lab VM's serial console goes: glidepath's domain XML decides."""
    from providers.migration.domain import console_log_path as path

    return path(name)


def console_log(host: str, name: str) -> Path:
    """A VM's console log on `host`, as the root namespace sees it."""
    return t.host_path(host, console_log_path(name))


def console_tails(names: list[str], hosts: list[str], chars: int = 1500) -> str:
    """The end of each VM's serial console log on each host that has one: what a failed
    move's report needs to tell the guest's own trouble (LAB.md: TCG) from ours."""
    parts = []
    for host in hosts:
        for name in names:
            log = console_log(host, name)
            if log.exists():
                tail = log.read_text(errors="replace")[-chars:]
                parts.append(f"--- {name} console on {host} (last {chars} chars) ---\n{tail}")
    return "\n".join(parts) or f"(no console log of {', '.join(names)} on any host)"


#: What a lab guest's console shows when it broke: a kernel that boots again (with
#: `panic=-1` a panic restarts it), an oops, corrupted lists, a virtio ring out of step,
#: a hung CPU. Any of them after a move is the guest's failure, whatever its network did.
TROUBLE = re.compile(
    r"Calibrating delay loop|Oops|BUG:|kernel BUG|list_(?:add|del) corruption|"
    r"__list_del_entry_valid|is not a head|soft lockup|general protection fault|"
    r"Kernel panic"
)


def trouble(console: str) -> list[str]:
    """The console lines that say the guest broke (TROUBLE), in order."""
    return [line.strip() for line in console.splitlines() if TROUBLE.search(line)]


def console_size(host: str, name: str) -> int:
    """How far a VM's console log on `host` goes now (0 if it has none)."""
    log = console_log(host, name)
    return log.stat().st_size if log.exists() else 0


def console_since(host: str, name: str, offset: int) -> str:
    """A VM's console log on `host` from `offset` on (what it printed since then)."""
    log = console_log(host, name)
    if not log.exists():
        return ""
    with log.open("rb") as handle:
        handle.seek(offset)
        return handle.read().decode(errors="replace")


def console_offsets(hosts: list[str]) -> dict[Path, int]:
    """Every VM console log on `hosts` (root namespace's view) and how far it goes now."""
    offsets = {}
    for host in hosts:
        pattern = console_log(host, "*")  # the one place that names a console log
        if pattern.parent.is_dir():
            for log in pattern.parent.glob(pattern.name):
                offsets[log] = log.stat().st_size
    return offsets


def trouble_since(offsets: dict[Path, int], hosts: list[str]) -> dict[Path, list[str]]:
    """The TROUBLE lines each console log on `hosts` printed after `offsets` (a log that
    is new since then, from its start; one that shrank was started afresh)."""
    found = {}
    for log, size in console_offsets(hosts).items():
        start = offsets.get(log, 0)
        with log.open("rb") as handle:
            handle.seek(start if start <= size else 0)
            lines = trouble(handle.read().decode(errors="replace"))
        if lines:
            found[log] = lines
    return found


def remove_vm(host: str, name: str) -> None:
    """Destroy and undefine `name` on `host` if present, and delete its disk."""
    run(host, ["virsh", "destroy", name], check=False, timeout=30)
    run(host, ["virsh", "undefine", name], check=False, timeout=30)
    run(host, ["rm", "-f", f"/var/lib/libvirt/images/{name}.img"], check=False)


# --- disk records ------------------------------------------------------------

_RECORD = re.compile(rb"GPSEQ (\d+) (\d+) ([\d.]+) (\S+)\n")


@dataclass(frozen=True)
class Record:
    seq: int
    epoch: int
    uptime: float
    name: str


def parse_records(data: bytes, *, stop_after_empty: int = 2048) -> list[Record]:
    """Records in a raw disk image; stops after `stop_after_empty` empty sectors in a row."""
    out: list[Record] = []
    empty = 0
    for off in range(0, len(data) - RECORD_SIZE + 1, RECORD_SIZE):
        m = _RECORD.match(data, off, off + RECORD_SIZE)
        if m is None:
            empty += 1
            if empty >= stop_after_empty:
                break
            continue
        empty = 0
        out.append(Record(int(m[1]), int(m[2]), float(m[3]), m[4].decode(errors="replace")))
    return out


def read_records(
    host: str, disk_path: str, *, limit_bytes: int = 256 * 1024 * 1024
) -> list[Record]:
    """Records on a VM disk on `host`, a file or a lab volume (read from the root
    namespace's view of its bytes: `topology.disk_file`)."""
    p = t.disk_file(host, disk_path)
    with open(p, "rb") as f:
        data = f.read(limit_bytes)
    return parse_records(data)


def read_sequence(host: str, disk_path: str) -> list[int]:
    """Sequence numbers written by the guest, in disk order."""
    return [r.seq for r in read_records(host, disk_path)]


def lost_writes(before: dict[int, Record], after: dict[int, Record]) -> list[Record]:
    """Records (by seq) read from a disk before some event that are not on it after. A
    sector the guest wrote again in a later second is not a lost write: the guest's writer
    starts over at seq 0 at each boot, over the records of the boot before."""
    return [
        record
        for seq, record in sorted(before.items())
        if after.get(seq) != record and not (seq in after and after[seq].epoch > record.epoch)
    ]


def sequence_gaps(seqs: list[int]) -> list[tuple[int, int]]:
    """Missing ranges [first, last] in a sequence that should be 0, 1, 2, ...

    A record at the wrong sector also counts (as the range it displaces).
    """
    gaps: list[tuple[int, int]] = []
    expect = 0
    for s in seqs:
        if s > expect:
            gaps.append((expect, s - 1))
        elif s < expect:
            gaps.append((s, s))  # duplicate or out of order
        expect = max(expect, s + 1)
    return gaps
