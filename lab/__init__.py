"""glidepath's lab: hypervisor hosts, an upstream router and a client as namespaces.

Public API (see lab/README.md):

    import lab
    lab.up(hosts=2); lab.down(); lab.status()
    lab.run("old", ["virsh", "list"])           # nsenter into a host, argv list
    lab.topology.OLD.address, lab.topology.PREFIX, lab.topology.KNOWN_HOSTS
    lab.guest.start_vm("old", lab.guest.VmSpec("vm1", vif=0))
    lab.probe.probe("203.0.113.2", seconds=5)
    lab.baseline.hand_migrate("vm1", "old", "new")
"""

from lab import topology
from lab.lifecycle import LabError, down, status, up
from lab.proc import CommandError, host_argv, popen, run

__all__ = [
    "CommandError",
    "LabError",
    "down",
    "host_argv",
    "popen",
    "run",
    "status",
    "topology",
    "up",
]
