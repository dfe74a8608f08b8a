"""VirtualMachine: one VM and where it runs; `host:` is the line a user changes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi

from components.config import StackConfig, VmConfig
from providers.schema.upstream import LabRouterCutover
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
        cutover = config.networks[vm.network].cutover
        # An adopted VM keeps its own definition: its fields stay unset (their defaults).
        own: dict[str, Any] = (
            {}
            if vm.adopt
            else {
                "memory_mib": vm.memory_mib,
                "vcpus": vm.vcpus,
                "cpu_model": vm.cpu_model,
                "mac": vm.mac,
                "disks": vm.disks,
                "boot": vm.boot,
                "domain_type": vm.domain_type,
            }
        )
        self.placement = VmPlacement(
            vm.name,
            name=vm.name,
            host=config.hosts[vm.host].endpoint(),
            fleet={name: host.endpoint() for name, host in config.hosts.items()},
            ip=vm.ip,
            vif=vm.vif,
            adopt=vm.adopt,
            **own,
            migration=vm.migration,
            delete_disks=vm.delete_disks,
            # Where the network's cutover switches after a move (lab-router): the move
            # opens that connection while it copies.
            cutover_router=cutover.router.model_dump()
            if isinstance(cutover, LabRouterCutover)
            else None,
            # The move's memory and disks go through the link between its hosts.
            tunnel_addresses=config.tunnel_addresses(),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(depends_on)),
        )
        self.register_outputs({})
