"""VirtualMachine: one VM and where it runs; `host:` is the line a user changes."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi

from components.config import StackConfig, VmConfig
from providers.schema.upstream import LabRouterCutover
from providers.schema.vm_placement import DEFAULT_VCPUS
from providers.vm_placement import VmPlacement


class VirtualMachine(pulumi.ComponentResource):
    def __init__(
        self,
        vm: VmConfig,
        config: StackConfig,
        depends_on: Sequence[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("glidepath:components:VirtualMachine", vm.name, {}, opts)
        fleet = {name: host.endpoint() for name, host in config.hosts.items()}
        cutover = config.networks[vm.network].cutover
        router = cutover.router.model_dump() if isinstance(cutover, LabRouterCutover) else None
        self.placement = VmPlacement(
            vm.name,
            {
                "name": vm.name,
                "host": config.hosts[vm.host].endpoint(),
                "fleet": fleet,
                "vif": vm.vif,
                "ip": vm.ip,
                "memory_mib": vm.memory_mib,
                "vcpus": DEFAULT_VCPUS,
                "disks": [{"path": d.path, "size_mib": d.size_mib} for d in vm.disks],
                "boot": dict(vm.boot),
                "domain_type": vm.domain_type,
                "delete_disks": vm.delete_disks,
                # Where the network's cutover switches after a move (lab-router): the
                # move opens that connection while it copies.
                "cutover_router": router,
                "migration": {
                    "max_downtime_ms": vm.migration.max_downtime_ms,
                    "bandwidth_mib_s": vm.migration.bandwidth_mib_s,
                    "auto_converge": vm.migration.auto_converge,
                    "timeout_s": vm.migration.timeout_s,
                },
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(depends_on)),
        )
        self.register_outputs({})
