"""A move's memory and disk cross between the hosts inside their `ssh -w` tunnel only.

VM `sealed` holds two markers that exist nowhere else: one in its memory (on its kernel
command line, which the kernel keeps in RAM) and one in its disk (written into the image
before the VM is created). While it moves old -> new, old's uplink (br0) and its tunnel
device (tun2) are captured in full. The markers must be in the tunnel's capture (the
streams went that way, and a capture finds them: the test can fail) and never in the
uplink's, where everything that leaves old for new is SSH. Then the same VM moves back
with `transport: direct`, and the uplink's capture does find both markers.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from lab import topology as t
from lab.proc import popen
from tests.e2e.conftest import GeneratedStack, lab_vm
from tests.e2e.test_preflight import running_on, wait_answers

pytestmark = [pytest.mark.e2e, pytest.mark.lab, pytest.mark.engine]

VM, VIF, IP = "sealed", 3, "203.0.113.5"
DISK = f"/var/lib/libvirt/images/{VM}.img"
DISK_MIB = 64
# Per run, so no earlier run's capture or disk can hold them.
RAM_MARKER = "GPRAM" + secrets.token_hex(10)
DISK_MARKER = "GPDISK" + secrets.token_hex(10)
# A marker may straddle two TCP segments; of several adjacent copies, one is whole.
RAM_COPIES = 6
DISK_MARKER_AT = 32 << 20  # past the guest's writer area (lab/guest.py: 8 MiB)


def _write_disk(host: str) -> None:
    """The VM's disk, as glidepath keeps an existing one: zeros, and the marker repeated
    over 64 KiB at 32 MiB (a sparse copy still has to send that block)."""
    path = t.host_path(host, DISK)
    path.parent.mkdir(parents=True, exist_ok=True)
    block = (DISK_MARKER.encode() * (65536 // len(DISK_MARKER) + 1))[:65536]
    with path.open("wb") as disk:
        disk.truncate(DISK_MIB << 20)
        disk.seek(DISK_MARKER_AT)
        disk.write(block)


@pytest.fixture(scope="module")
def stack(
    lab: Any, generated_stacks: Callable[[str, dict[str, dict[str, Any]]], GeneratedStack]
) -> GeneratedStack:
    vm = lab_vm(VM, VIF, "old")
    vm["disks"] = [{"path": DISK, "size_mib": DISK_MIB}]
    markers = " ".join(f"gp.marker{i}={RAM_MARKER}" for i in range(RAM_COPIES))
    vm["boot"] = {**vm["boot"], "cmdline": f"{vm['boot']['cmdline']} {markers}"}
    handle = generated_stacks("encrypted", {VM: vm})  # removes earlier disks everywhere
    _write_disk("old")
    return handle


@contextmanager
def _capture(lab: Any, host: str, device: str, out: Path) -> Iterator[list[str]]:
    """Every packet on `device` in `host`, whole, into `out`; yields, then the tcpdump
    summary lines (captured / dropped)."""
    summary: list[str] = []
    with out.open("wb") as sink:
        process = popen(host, ["tcpdump", "-i", device, "-s", "0", "-B", "32768", "-U",
                               "-n", "-w", "-"], stdout=sink)  # fmt: skip
        try:
            yield summary
        finally:
            os.kill(process.pid, signal.SIGINT)  # by PID: tcpdump prints its counts and ends
            try:
                _, err = process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                _, err = process.communicate(timeout=10)
            summary += [line for line in (err or "").splitlines() if "packets" in line]


def _holds(capture: Path, marker: str) -> bool:
    return marker.encode() in capture.read_bytes()


def test_memory_and_disk_cross_only_inside_the_tunnel(
    lab: Any, stack: GeneratedStack, tmp_path: Path
) -> None:
    assert stack.up().summary.result == "succeeded"
    assert running_on(lab, VM) == ["old"]
    wait_answers(lab, IP)
    # The memory marker is in the running guest's RAM: the kernel holds its command line.
    console = t.host_path("old", f"/var/log/libvirt/qemu/{VM}-console.log").read_text(
        errors="replace"
    )
    assert RAM_MARKER in console  # the kernel printed its command line at boot

    stack.move(VM, "new")
    uplink, tunnel = tmp_path / "br0.pcap", tmp_path / "tun2.pcap"
    with (
        _capture(lab, "old", t.UPLINK, uplink) as uplink_counts,
        _capture(lab, "old", t.TUNNEL_DEV, tunnel) as tunnel_counts,
    ):
        result = stack.up()
    assert result.summary.result == "succeeded"
    assert running_on(lab, VM) == ["new"]
    print("br0:", uplink_counts, uplink.stat().st_size, "bytes")
    print("tun2:", tunnel_counts, tunnel.stat().st_size, "bytes")
    said = "\n".join(stack.output)
    assert "memory and disks through the old-new tunnel (198.18.100.2)" in said, said

    # Control: the markers did cross, through the tunnel, and a capture finds them.
    assert _holds(tunnel, DISK_MARKER), "the disk marker never crossed the tunnel"
    assert _holds(tunnel, RAM_MARKER), "the memory marker never crossed the tunnel"
    # The uplink carried the move too (as SSH), but never the VM's bytes in clear.
    assert uplink.stat().st_size > tunnel.stat().st_size // 2
    assert not _holds(uplink, DISK_MARKER), "the disk crossed old's uplink in clear"
    assert not _holds(uplink, RAM_MARKER), "the memory crossed old's uplink in clear"
    wait_answers(lab, IP, boot_s=10)


def test_direct_transport_crosses_the_uplink_in_clear(
    lab: Any, stack: GeneratedStack, tmp_path: Path
) -> None:
    """The other side of the control: with `transport: direct` (libvirt's default path)
    the same capture on the uplink finds both markers, so the first test's capture would
    have seen them had they crossed in clear."""
    assert running_on(lab, VM) == ["new"]
    vms = stack.raw["config"]["glidepath:vms"]
    vms[VM]["migration"] = {**vms[VM].get("migration", {}), "transport": "direct"}
    stack.set("vms", vms)
    stack.move(VM, "old")
    uplink = tmp_path / "br0.pcap"
    with _capture(lab, "old", t.UPLINK, uplink):
        assert stack.up().summary.result == "succeeded"
    assert running_on(lab, VM) == ["old"]
    assert "memory and disks cross new -> old in clear (transport: direct)" in "\n".join(
        stack.output
    )
    assert _holds(uplink, DISK_MARKER) and _holds(uplink, RAM_MARKER)
    wait_answers(lab, IP, boot_s=10)
