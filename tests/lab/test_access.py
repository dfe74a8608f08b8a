"""How everything reaches the lab hosts: one root-namespace route, SSH with verified
host keys (root -> hosts and core, host -> host), libvirt over SSH."""

from __future__ import annotations

import re
import subprocess

import pytest

from lab import lifecycle, probe
from lab import topology as t
from lab.fixtures import LabHandle

pytestmark = pytest.mark.lab


def _root(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def test_root_namespace_gets_one_route(lab: LabHandle) -> None:
    routes = _root(["ip", "-4", "route", "show", "dev", t.ROOT_LINK]).stdout.strip().splitlines()
    assert routes == [f"{t.CONTROL_ROUTE} via {t.CORE_CTL_ADDR.ip} onlink"]
    default = _root(["ip", "-4", "route", "show", "default"]).stdout
    assert t.ROOT_LINK not in default


def test_ssh_from_root_verifies_host_keys(lab: LabHandle) -> None:
    for host in (*lab.hosts, t.CORE):
        out = _root(lifecycle.ssh_argv(host, ["cat", "/proc/sys/kernel/hostname"]))
        assert out.returncode == 0, out.stderr
        if host != t.CORE:
            assert out.stdout.strip() == host
    # Not vacuous: without the lab's known_hosts the same connection is refused.
    ssh_f = lifecycle.ssh_argv("old")[:3]  # ssh -F <lab ssh_config>
    bad = _root([*ssh_f, "-o", "UserKnownHostsFile=/dev/null", "old", "true"])
    assert bad.returncode == 255 and "Host key verification failed" in bad.stderr
    # core's sshd is where the lab cutover backend switches the route.
    route = _root(lifecycle.ssh_argv(t.CORE, ["ip", "route", "show", str(t.PREFIX)])).stdout
    assert route.startswith(f"{t.PREFIX} via ")


def test_libvirt_over_ssh_from_root_and_between_hosts(lab: LabHandle) -> None:
    uri = (
        f"qemu+libssh://root@{t.NEW.address}/system?keyfile={t.CLIENT_KEY}"
        f"&known_hosts={t.KNOWN_HOSTS}&known_hosts_verify=normal&sshauth=privkey"
    )
    out = _root(["virsh", "-c", uri, "hostname"])
    assert out.returncode == 0 and out.stdout.strip() == "new", out.stderr
    # Host to host, as `virsh migrate ... qemu+ssh://` and `ssh -w` run them.
    assert lab.run("old", ["ssh", f"root@{t.NEW.address}", "hostname"]).stdout.strip() == "new"
    got = lab.run("old", ["virsh", "-c", t.NEW.libvirt_uri, "hostname"], timeout=60).stdout
    assert got.strip() == "new"
    # Distinct host UUIDs, or libvirt refuses to migrate ("the same host").
    uuids = {
        re.search(r"<uuid>(.*)</uuid>", lab.run(h, ["virsh", "capabilities"]).stdout).group(1)  # type: ignore[union-attr]
        for h in lab.hosts
    }
    assert len(uuids) == len(lab.hosts)


def test_probe_refuses_targets_outside_the_lab(lab: LabHandle) -> None:
    for target in ("192.0.2.1", "10.255.255.53", "1.1.1.1"):
        with pytest.raises(ValueError, match="outside the lab"):
            probe.start_probe(target, 1.0)
