"""lab up / down themselves: idempotent, fast, self-healing, and clean on the way out.

Runs its own up/down (no session fixture) and leaves the lab as it found it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import baseline, guest, lifecycle
from lab import topology as t
from lab.fixtures import require_lab

pytestmark = pytest.mark.lab

NAMES = (t.CORE, t.CLIENT, "old", "new")


@pytest.fixture
def restore() -> Iterator[None]:
    require_lab()
    st = lifecycle.load_state()
    was_up = st is not None and not lifecycle.status()["problems"]
    yield
    if was_up:
        lifecycle.up()
    else:
        lifecycle.down()


def _ns_ids() -> set[tuple[int, int]]:
    ids = set()
    # Every hypervisor of the lab as it is now (another test may have grown it to 3+).
    state = lifecycle.load_state()
    hosts = state.hosts if state is not None else ["old", "new"]
    for n in (*NAMES, *hosts):
        p = Path("/run/netns", n)
        if p.exists():
            st = os.stat(p)
            ids.add((st.st_dev, st.st_ino))
    for h in hosts:
        for p in (t.hypervisor(h).mnt_ns, t.hypervisor(h).uts_ns):
            st = os.stat(p)
            ids.add((st.st_dev, st.st_ino))
    return ids


def _procs_in(ids: set[tuple[int, int]]) -> list[int]:
    out = []
    for e in os.scandir("/proc"):
        if not e.name.isdigit():
            continue
        for kind in ("net", "mnt", "uts"):
            try:
                st = os.stat(f"/proc/{e.name}/ns/{kind}")
            except OSError:
                break
            if (st.st_dev, st.st_ino) in ids:
                out.append(int(e.name))
                break
    return out


def _procs_mentioning(*needles: str) -> list[str]:
    found = []
    for e in os.scandir("/proc"):
        if not e.name.isdigit():
            continue
        try:
            cmd = (
                Path(f"/proc/{e.name}/cmdline")
                .read_bytes()
                .replace(b"\0", b" ")
                .decode(errors="replace")
            )
        except OSError:
            continue
        if any(n in cmd for n in needles):
            found.append(f"{e.name}: {cmd[:120]}")
    return found


def test_up_idempotent_down_clean_up_cold(restore: None) -> None:
    st = lifecycle.up()
    assert st["up"], st["problems"]
    # Something running in every kind of namespace: a VM (qemu) and a tunnel (ssh + sshd).
    vm = guest.VmSpec("vm-updown", vif=4)
    guest.start_vm("old", vm)
    tun = baseline.open_tunnel("old", "new")
    ids = _ns_ids()
    pids = lifecycle.lab_pids()
    assert len(pids) >= 8 and set(pids) <= set(_procs_in(ids))
    qemu = [
        p for p in pids if "qemu-system" in Path(f"/proc/{p}/cmdline").read_text(errors="replace")
    ]
    assert qemu, "no qemu process found among the lab's processes"

    again = lifecycle.up()
    print(f"\nlab up (already up): {again['seconds']} s")
    assert again["changed"] is False and again["seconds"] < 2

    t0 = time.monotonic()
    left = lifecycle.down()
    print(f"lab down: {time.monotonic() - t0:.2f} s")
    baseline.close_tunnel(tun)
    assert left == []
    assert _procs_in(ids) == []
    assert not [
        p
        for p in pids
        if Path(f"/proc/{p}").exists()
        and "Z" not in Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1][:3]
    ]
    assert _procs_mentioning(str(t.STATE_DIR), str(t.GUEST_DIR)) == []
    assert not any(Path("/run/netns", n).exists() for n in NAMES)
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(t.STATE_DIR) not in mounts
    assert subprocess.run(["ip", "link", "show", t.ROOT_LINK], capture_output=True).returncode != 0
    assert (
        subprocess.run(
            ["ip", "route", "show", str(t.CONTROL_ROUTE)], capture_output=True, text=True
        ).stdout.strip()
        == ""
    )
    assert not t.STATE_DIR.exists()
    assert lifecycle.status()["up"] is False

    # A namespace with a lab name that the lab did not create: refuse, touch nothing.
    subprocess.run(["ip", "netns", "add", t.CLIENT], check=True)
    try:
        with pytest.raises(lifecycle.LabError, match="not created by this lab"):
            lifecycle.up()
        assert not Path("/run/netns", t.CORE).exists()
    finally:
        subprocess.run(["ip", "netns", "del", t.CLIENT], check=True)

    st = lifecycle.up()
    print(f"lab up (cold, image cached): {st['seconds']} s")
    assert st["changed"] is True and st["up"] and st["seconds"] < 30


def test_up_repairs_a_crashed_lab(restore: None) -> None:
    assert lifecycle.up()["up"]
    # A crash: libvirtd on new gone, a stray process left inside old.
    pid = int(t.NEW.libvirtd_pidfile.read_text())
    os.kill(pid, signal.SIGKILL)
    stray = subprocess.Popen(lifecycle.host_argv("old", ["sleep", "600"]))
    time.sleep(0.2)
    assert "libvirtd on new not running" in lifecycle.status()["problems"]
    st = lifecycle.up()
    assert st["changed"] is True and st["up"], st["problems"]
    stray.wait(10)  # killed by PID as a process of the old lab
    assert stray.returncode is not None
    # And it works: host-to-host SSH and libvirt.
    lifecycle.run("old", ["ssh", f"root@{t.NEW.address}", "virsh", "list"], timeout=60)
