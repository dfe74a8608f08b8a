"""The fault tests of issue 7, NOT collected by pytest (the file name does not start with
test_): written, but not reliable here yet. They use faults_support.py's stack and helpers.

Fault 1 (the tunnel's ssh killed mid-migration) passed in 4 of 7 runs; in the others the
guest died around the switchover: a soft lockup in virtnet_poll_tx, or its virtio-net ring
broken ("virtio_net virtio0: output.0:id 5 is not a head!" on its console), so the VM
never answered on the target.

Why they are parked (measured 2026-11-26, see the issue 7 note):
- after a long bandwidth-limited move that was interrupted and retried, the lab's 1-vCPU
  TCG guest crashed in its virtio_net receive path (general protection fault in
  kmem_cache_alloc_bulk; earlier a soft lockup in virtnet_poll_tx), so the "nothing lost"
  and "completes" checks fail on a dead guest rather than on glidepath;
- a failure in one test leaves the shared stack mid-way for the next (the Upstream wants
  an update), so the rest fail in cascade.
To work on one: copy it into a test_*.py that imports faults_support's fixture and
helpers, and run it alone.
"""

# ruff: noqa
# mypy: ignore-errors
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from engine import PROJECT_ROOT, TOOLS_BIN, engine_env
from lab import baseline, faults, guest
from lab import topology as t
from tests.e2e.faults_support import *  # noqa: F403

# --- 1. the tunnel's ssh is killed --------------------------------------------------------


def tunnel_up(lab: Any) -> bool:
    return all(
        "UP" in lab.run(h, ["ip", "-o", "link", "show", "dev", t.TUNNEL_DEV], check=False).stdout
        for h in ("old", "new")
    )


def test_1_tunnel_ssh_killed_mid_migration(lab: Any, stack: GeneratedStack) -> None:
    source = where(lab)
    target = other(source)
    before = guest.read_sequence(source, DISK)
    stack.move(VM, target)
    with probing(lab) as timeline:
        run = Background(stack)
        at = run.wait_for(MIGRATING)
        keeper = faults.tunnel_keeper_pid("old", "new")
        killed = faults.kill_tunnel_ssh("old", "new")
        print(f"killed the tunnel's ssh (pid {killed}) {at:.1f} s into up")
        seconds = run.join()
    print(f"up took {seconds:.1f} s")
    assert run.error is None, run.text()
    # The keeper (the same process) started a new ssh and tun2 is up again.
    deadline = time.monotonic() + 20
    while not (tunnel_up(lab) and faults.tunnel_ssh_pids("old", "new")):
        assert time.monotonic() < deadline, "the tunnel did not come back within 20 s"
        time.sleep(0.25)
    assert faults.tunnel_keeper_pid("old", "new") == keeper
    assert killed not in faults.tunnel_ssh_pids("old", "new")
    assert where(lab) == target
    assert baseline.core_route() == target
    assert_nothing_lost(lab, target, before)
    assert timeline[0].longest_gap_ms < 5000, timeline[0].summary()
    refresh_is_consistent(lab, stack)
    completes(lab, stack, target, before)


# --- 2. the link between the hosts is cut --------------------------------------------------


def failed_move(run: Background, source: str, target: str) -> str:
    """The `up` failed, saying the move failed and that the VM still runs on the source."""
    assert run.error is not None, "up succeeded:\n" + run.text()
    text = run.text()
    assert f"{VM}: migration {source} -> {target} failed after" in text, text[-3000:]
    return text


def test_2_link_cut_mid_migration_then_restored(lab: Any, stack: GeneratedStack) -> None:
    """Cut for LINK_CUT_S, then restored while `up` still runs. Kept cut, the move does
    not end at timeout_s: the abort waits on the disk mirror's TCP connection until the
    link returns (see docs/recovery.md)."""
    source = where(lab)
    target = other(source)
    before = guest.read_sequence(source, DISK)
    stack.move(VM, target)
    with probing(lab) as timeline:
        run = Background(stack)
        at = run.wait_for(MIGRATING)
        faults.link_down(target)
        try:
            print(f"cut {target}'s link {at:.1f} s into up")
            time.sleep(LINK_CUT_S)
        finally:
            faults.link_up(target)
        print(f"restored {target}'s link")
        seconds = run.join(TIMEOUT_S + 120)
    print(f"up took {seconds:.1f} s; {'failed' if run.error else 'succeeded'}")
    if run.error is None:
        now = target  # the copy resumed over the restored link and finished
    else:
        text = failed_move(run, source, target)
        assert f"still runs on {source}" in text or "resumed there" in text, text[-3000:]
        now = source
    assert where(lab) == now
    assert_nothing_lost(lab, now, before)
    print(timeline[0].summary())
    refresh_is_consistent(lab, stack)
    no_domain_left(lab, other(now))
    completes(lab, stack, target, before)


# --- 3. libvirtd on the target is killed -----------------------------------------------------


def test_3_target_libvirtd_killed_mid_migration(lab: Any, stack: GeneratedStack) -> None:
    source = where(lab)
    target = other(source)
    before = guest.read_sequence(source, DISK)
    stack.move(VM, target)
    with probing(lab):
        run = Background(stack)
        at = run.wait_for(MIGRATING)
        killed = faults.kill_libvirtd(target)
        print(f"killed libvirtd {killed} on {target} {at:.1f} s into up")
        try:
            seconds = run.join(TIMEOUT_S + 120)
        finally:
            started = faults.start_libvirtd(target)
    print(f"up took {seconds:.1f} s; libvirtd on {target} restarted as {started}")
    failed_move(run, source, target)
    assert where(lab) == source
    assert baseline.core_route() == source
    assert_nothing_lost(lab, source, before)
    print(
        f"{target} after the restart:",
        lab.run(target, ["virsh", "list", "--all"], timeout=30).stdout,
    )
    refresh_is_consistent(lab, stack)
    no_domain_left(lab, target)
    completes(lab, stack, target, before)


# --- 4. the target disk has no directory, or no room (preview) --------------------------------


def preview_fails(lab: Any, stack: GeneratedStack, *expected: str) -> str:
    """The preview fails saying `expected`, and nothing changed on any host."""
    source = where(lab)
    before = (running_on(lab, VM), baseline.core_route())
    with pytest.raises(auto.CommandError) as error:
        stack.preview()
    text = str(error.value) + "\n".join(stack.output)
    for part in expected:
        assert part in text, text[-3000:]
    assert (running_on(lab, VM), baseline.core_route()) == before
    no_domain_left(lab, other(source))
    return text


def test_4_target_disk_directory_missing_or_full_fails_preview(
    lab: Any, stack: GeneratedStack
) -> None:
    """A smaller target file: test_preflight.py. Here the directory is missing, then has
    no room (a 16 MiB tmpfs over it on the target)."""
    source = where(lab)
    target = other(source)
    before = guest.read_sequence(source, DISK)
    images = DISK.rsplit("/", 1)[0]
    stack.move(VM, target)
    lab.run(target, ["mv", "--", images, f"{images}.fault"], timeout=30)
    try:
        preview_fails(lab, stack, f"{DISK}: its directory does not exist on the target")
    finally:
        lab.run(target, ["mv", "--", f"{images}.fault", images], timeout=30)
    lab.run(target, ["mount", "-t", "tmpfs", "-o", "size=16m", "fault", images], timeout=30)
    try:
        preview_fails(lab, stack, f"{DISK}: {DISK_MIB} MiB needed on the target, 16 MiB free")
    finally:
        lab.run(target, ["umount", images], timeout=30)
    refresh_is_consistent(lab, stack)
    completes(lab, stack, target, before)


# --- 5. the target is unreachable (preview) ----------------------------------------------------


def test_5_target_unreachable_fails_preview_clearly(lab: Any, stack: GeneratedStack) -> None:
    source = where(lab)
    target = other(source)
    before = guest.read_sequence(source, DISK)
    stack.move(VM, target)
    faults.link_down(target)
    started = time.monotonic()
    try:
        text = preview_fails(lab, stack, f"{VM}: pre-flight: {target} (root@", "unreachable")
    finally:
        faults.link_up(target)
    print(f"preview failed after {time.monotonic() - started:.1f} s")
    print([line for line in text.splitlines() if "pre-flight" in line][:3])
    refresh_is_consistent(lab, stack)
    completes(lab, stack, target, before)


# --- 6. the upstream switch fails or times out -------------------------------------------------


@pytest.mark.parametrize("action", ["reject", "drop"])
def test_6_upstream_switch_fails_leaves_a_working_path(
    lab: Any, stack: GeneratedStack, action: str
) -> None:
    """core's sshd refuses (reject) or ignores (drop: the connect times out) new
    connections from the moment the migration runs: the move completes, the cutover
    cannot switch. The prefix stays on the source, the target keeps its egress mark, so
    the VM answers through the tunnel; `up` says what happened."""
    source = where(lab)
    target = other(source)
    before = guest.read_sequence(source, DISK)
    stack.move(VM, target)
    with probing(lab) as timeline:
        run = Background(stack)
        try:
            run.wait_for(MIGRATING)
            faults.block_ssh(t.CORE, action)
            seconds = run.join()
            print(f"up took {seconds:.1f} s")
            assert run.error is not None, run.text()
            text = run.text()
            print([line for line in text.splitlines() if "net0" in line or "core" in line][-8:])
            assert "core (root@198.18.0.2:22)" in text, text[-3000:]
            assert where(lab) == target
            assert baseline.core_route() == source
            # The working path: the target still marks the VM's packets into the tunnel.
            mangle = lab.run(target, ["iptables-save", "-t", "mangle"], timeout=30).stdout
            assert "glidepath net0" in mangle
            wait_answers(lab, VM_IP, boot_s=10)
            cutover_scripts = lab.run(
                target, ["pgrep", "-f", "glidepath-cutover"], check=False, timeout=30
            ).stdout
            assert cutover_scripts.strip() == "", "a cutover trigger was left running"
        finally:
            faults.unblock_ssh(t.CORE, action)
    print(timeline[0].summary())
    assert_nothing_lost(lab, target, before)
    refresh_is_consistent(lab, stack)
    completes(lab, stack, target, before)


# --- 7. `pulumi up` is SIGKILLed during the migration -------------------------------------------


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    todo = [pid]
    while todo and len(found) < 200:
        children = faults.children(todo.pop())
        found += children
        todo += children
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_7_pulumi_up_sigkilled_mid_migration(lab: Any, stack: GeneratedStack) -> None:
    """docs/recovery.md's steps: wait for the migration to end, end the orphaned provider
    process, `pulumi cancel`, `pulumi refresh`, `pulumi up`."""
    source = where(lab)
    target = other(source)
    before = guest.read_sequence(source, DISK)
    stack.move(VM, target)
    name = stack.stack.name
    cli = subprocess.Popen(
        [str(TOOLS_BIN / "pulumi"), "up", "--yes", "--skip-preview", "--non-interactive",
         "--color", "never", "--stack", name],
        cwd=PROJECT_ROOT, env=engine_env(), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert cli.stdout is not None
    orphans: list[int] = []
    try:
        deadline = time.monotonic() + 90
        for line in cli.stdout:
            print(line, end="")
            if MIGRATING in line:
                break
            assert time.monotonic() < deadline, "no migration progress within 90 s"
        orphans = descendants(cli.pid)
        os.kill(cli.pid, signal.SIGKILL)
        cli.wait(10)
        print(f"SIGKILLed pulumi up (pid {cli.pid}); its processes left: {orphans}")
        # 1. The orphaned provider goes on with the migration: wait for it to end.
        deadline = time.monotonic() + TIMEOUT_S + 60
        while True:
            job = lab.run(source, ["virsh", "domjobinfo", VM], check=False, timeout=30).stdout
            hosts = running_on(lab, VM)
            if len(hosts) == 1 and ("None" in job or hosts == [target]):
                break
            assert time.monotonic() < deadline, f"migration still running: {hosts} {job}"
            time.sleep(1)
        print(f"after the migration: {VM} runs on {hosts}")
    finally:
        # 2. End the orphaned processes by PID.
        for pid in orphans:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if cli.poll() is None:
            cli.kill()
        cli.wait(10)
    # 3. The stack is locked until `pulumi cancel`.
    with pytest.raises(auto.CommandError) as locked:
        stack.refresh()
    assert "locked" in str(locked.value)
    stack.stack.cancel()
    # 4. refresh: the state learns where the VM runs; 5. up: the rest of the move.
    now = where(lab)
    assert_nothing_lost(lab, now, before)
    refresh_is_consistent(lab, stack)
    completes(lab, stack, target, before)
