"""pytest fixtures for the lab; register with `from lab.fixtures import *` in a conftest.

- `lab` (session): brings the lab up (GLIDEPATH_LAB_HOSTS hypervisors, default 2)
  and yields a LabHandle; at the end brings it down only if this session
  started it (GLIDEPATH_LAB_KEEP=1 keeps it up anyway).
- `lab_vms` (function): starts lab VMs and, afterwards, removes them from
  every host and points core's route back at `old`.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from lab import baseline, guest, lifecycle
from lab import probe as probe_mod
from lab import topology as t
from lab.proc import popen, run

__all__ = ["LabHandle", "VmFactory", "lab", "lab_vms", "require_lab"]


@dataclass
class LabHandle:
    """What a test needs from the lab: hosts, commands, VM disks, probes."""

    hosts: tuple[str, ...]
    started_here: bool
    topology = t
    run = staticmethod(run)
    popen = staticmethod(popen)

    def read_sequence(self, host: str, disk_path: str) -> list[int]:
        return guest.read_sequence(host, disk_path)

    def probe(self, target: str, seconds: float, *, http: bool = False) -> probe_mod.ProbeResult:
        return probe_mod.probe(target, seconds, http=http)

    def start_probe(
        self, target: str, seconds: float, *, http: bool = False, interval: float = 0.01
    ) -> probe_mod.RunningProbe:
        return probe_mod.start_probe(target, seconds, http=http, interval=interval)

    def where(self, vm: str) -> list[str]:
        """Hosts on which `vm` is running."""
        return [
            h
            for h in self.hosts
            if vm
            in run(
                h, ["virsh", "list", "--name", "--state-running"], check=False, timeout=30
            ).stdout.split()
        ]


def lab_unavailable() -> str | None:
    """Why this machine cannot run the lab, or None."""
    if os.geteuid() != 0:
        return "the lab needs root (namespaces, mounts, libvirtd)"
    try:
        result = subprocess.run(
            ["unshare", "--net", "--mount", "true"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"the lab needs network namespaces: {err}"
    if result.returncode != 0:
        return f"the lab needs network namespaces: {result.stderr.strip() or 'unshare failed'}"
    return None


def require_lab() -> None:
    """Skip a lab test where the lab cannot run; under CI (CI=true) fail instead, so CI
    never passes by skipping the tests that matter most."""
    reason = lab_unavailable()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}: CI must run the lab tests", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def lab() -> Iterator[LabHandle]:
    require_lab()
    hosts = int(os.environ.get("GLIDEPATH_LAB_HOSTS", "2"))
    before = lifecycle.load_state()
    was_up = before is not None and before.complete and not lifecycle.status()["problems"]
    st = lifecycle.up(hosts=hosts)
    assert st["up"], st["problems"]
    handle = LabHandle(hosts=tuple(st["hosts"]), started_here=not was_up)
    yield handle
    if handle.started_here and os.environ.get("GLIDEPATH_LAB_KEEP") != "1":
        left = lifecycle.down()
        assert not left, f"lab down left: {left}"


@dataclass
class VmFactory:
    lab: LabHandle
    made: list[guest.VmSpec] = field(default_factory=list)

    def __call__(self, host: str, name: str, vif: int = 0, **kw: int) -> guest.VmSpec:
        vm = guest.VmSpec(name, vif=vif, **kw)
        for h in self.lab.hosts:  # a leftover of an earlier failed run
            guest.remove_vm(h, name)
        self.made.append(vm)
        guest.start_vm(host, vm)
        return vm

    def cleanup(self) -> None:
        for vm in self.made:
            for h in self.lab.hosts:
                guest.remove_vm(h, vm.name)
        baseline.switch_core(self.lab.hosts[0])


@pytest.fixture
def lab_vms(lab: LabHandle) -> Iterator[VmFactory]:
    f = VmFactory(lab)
    yield f
    f.cleanup()
