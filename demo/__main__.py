"""`make demo`: glidepath's main job on the lab, as a user does it.

1. bring the lab up, create (or select) the `lab` stack and `pulumi up` it: `blog` runs
   on `old`, reachable from the client through `core`;
2. change `host: old` to `host: new` in stacks/Pulumi.lab.yaml, show `pulumi preview
   --diff`, run `pulumi up` while the client pings blog every 10 ms;
3. move it back the same way.
Whatever happens, the machine is left as it was found: the stack file restored, the
stack destroyed and removed (its config file kept), the VM the destroy released removed
by hand, the lab down unless it was up before.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass

import lab
from engine import PROJECT_ROOT, engine_env
from lab import guest
from lab.probe import probe, start_probe
from lab.stacks import remove_vm_everywhere

STACK = "lab"
STACK_FILE = PROJECT_ROOT / "stacks" / f"Pulumi.{STACK}.yaml"
VM, VM_IP, DISK = "blog", "203.0.113.2", "/var/lib/libvirt/images/blog.img"


def say(line: str) -> None:
    print(f"demo: {line}", flush=True)


def pulumi(*args: str, stack: bool = True) -> str:
    """Run the pulumi CLI as a user would, showing its output; fail on error."""
    say("$ pulumi " + " ".join(args))
    process = subprocess.Popen(
        ["pulumi", "--non-interactive", *args, *(["--stack", STACK] if stack else [])],
        cwd=PROJECT_ROOT,
        env=engine_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        print(line, end="", flush=True)
        lines.append(line)
    if process.wait() != 0:
        raise SystemExit(f"demo: pulumi {args[0]} failed (exit {process.returncode})")
    return "".join(lines)


def set_host(text: str, host: str) -> str:
    """The one line a user changes: blog's `host:` in the stack file."""
    pattern = re.compile(r"(\n    blog:\n(?:      .*\n)*?      host: )\w+")
    changed, count = pattern.subn(lambda m: m.group(1) + host, text)
    if count != 1:
        raise SystemExit("demo: could not find blog's host line in the stack file")
    return changed


@dataclass
class Move:
    source: str
    target: str
    gap_ms: float
    qemu_downtime_ms: int
    lost_writes: int
    # The client's TCP stream to the VM, open across the move: 1 if it broke.
    tcp_resets: int

    def summary(self) -> str:
        return (
            f"{self.source}->{self.target} gap_ms={self.gap_ms:.0f} "
            f"qemu_downtime_ms={self.qemu_downtime_ms} lost_writes={self.lost_writes}"
        )


def wait_answers(seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if probe(VM_IP, 1).received:
            return
    raise SystemExit(f"demo: {VM} does not answer from the client after {seconds:.0f} s")


def lost(sequence: list[int]) -> int:
    return sum(last - first + 1 for first, last in guest.sequence_gaps(sequence))


def move(original: str, source: str, target: str) -> Move:
    say(f"moving {VM}: change `host: {source}` to `host: {target}` in {STACK_FILE.name}")
    STACK_FILE.write_text(set_host(original, target))
    pulumi("preview", "--diff")
    running = start_probe(VM_IP, 300, tcp=True)
    try:
        output = pulumi("up", "--yes", "--skip-preview")
    finally:
        timeline = running.stop()
    say(timeline.summary())
    downtime = re.search(rf"{VM}: moved {source} -> {target} in .*?downtime (\d+) ms", output)
    wait_answers()
    return Move(
        source,
        target,
        timeline.longest_gap_ms,
        int(downtime.group(1)) if downtime else -1,
        lost(guest.read_sequence(target, DISK)),
        int(timeline.tcp_broken),
    )


def lab_was_up() -> bool:
    return bool(lab.status()["up"])


def open_stack() -> None:
    """Select the lab stack, creating it on a fresh clone; an earlier demo that was
    interrupted may have left one with resources: destroy those first."""
    listed = subprocess.run(
        ["pulumi", "--non-interactive", "stack", "ls", "--json"],
        cwd=PROJECT_ROOT,
        env=engine_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    stacks = json.loads(listed.stdout or "[]") if listed.returncode == 0 else []
    existing = next((s for s in stacks if s.get("name") == STACK), None)
    pulumi("stack", "select", "--create", STACK, stack=False)
    if existing and existing.get("resourceCount"):
        say("an earlier demo left the stack with resources: destroying them first")
        pulumi("destroy", "--yes", "--skip-preview")


def close_stack() -> None:
    pulumi("destroy", "--yes", "--skip-preview")
    pulumi("stack", "rm", "--yes", "--preserve-config", STACK, stack=False)
    # The destroy released the VM (on_remove's default): it runs on until removed by hand.
    say(f"{VM} was released by the destroy: removing it by hand (virsh destroy, undefine)")
    remove_vm_everywhere([VM], [])


def main() -> int:
    was_up = lab_was_up()
    say("bringing the lab up (python -m lab up)")
    lab.up()
    original = STACK_FILE.read_text()
    moves: list[Move] = []
    try:
        open_stack()
        say(f"the stack as committed: {VM} on old")
        pulumi("up", "--yes", "--skip-preview")
        wait_answers()
        say(f"{VM} answers from the client through core")
        moves = [move(original, "old", "new"), move(original, "new", "old")]
    finally:
        STACK_FILE.write_text(original)
        say("cleaning up: the stack destroyed and removed, the lab as it was")
        try:
            close_stack()
        finally:
            STACK_FILE.write_text(original)
            if not was_up:
                left = lab.down()
                if left:
                    say(f"lab down left: {left}")
    resets = sum(m.tcp_resets for m in moves)
    print(f"demo: {VM} {moves[0].summary()}; {moves[1].summary()}; tcp_resets={resets}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
