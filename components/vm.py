"""VirtualMachine: one VM and where it runs; `host:` is the line a user changes.

Pulumi knows the placement by its URN, which holds this component's type, the
placement's type and the VM's name. A refactor that changes one of them without an
alias is a create and a delete of the placement: the create adopts the running domain,
and the delete releases it (or, with `on_remove: shutdown`, shuts it down; with
`protect: true` it fails). So a refactor adds what they were to FORMERLY (this component)
or PLACEMENT_FORMERLY (the placement moved under another parent, or retyped), and pulumi
keeps the state: no step touches the VM (tests/e2e/test_lifecycle.py moves a placement
to a new parent that way).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import pulumi

from components.config import StackConfig, VmConfig
from providers.schema.upstream import LabRouterCutover
from providers.vm_placement import VmPlacement


class VirtualMachine(pulumi.ComponentResource):
    #: Part of this component's URN and of its placement's: renamed only with an alias.
    TYPE = "glidepath:components:VirtualMachine"
    #: What this component was declared as before a refactor (the placement, its child,
    #: follows it). None yet.
    FORMERLY: ClassVar[tuple[pulumi.Alias, ...]] = ()
    #: What the placement was declared as before a refactor, such as
    #: `pulumi.Alias(parent=<the old parent's URN>)`. None yet.
    PLACEMENT_FORMERLY: ClassVar[tuple[pulumi.Alias, ...]] = ()

    def __init__(
        self,
        vm: VmConfig,
        config: StackConfig,
        depends_on: Sequence[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            self.TYPE,
            vm.name,
            {},
            pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(aliases=[*self.FORMERLY])),
        )
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
            on_remove=vm.on_remove,
            shutdown_timeout_s=vm.shutdown_timeout_s,
            delete_disks=vm.delete_disks,
            # Where the network's cutover switches after a move (lab-router): the move
            # opens that connection while it copies.
            cutover_router=cutover.router.model_dump()
            if isinstance(cutover, LabRouterCutover)
            else None,
            # The move's memory and disks go through the link between its hosts.
            tunnel_addresses=config.tunnel_addresses(),
            moves_at_once=config.moves.at_once,
            opts=self.placement_options(vm, self, depends_on),
        )
        self.register_outputs({})

    @classmethod
    def placement_options(
        cls, vm: VmConfig, parent: pulumi.Resource | None, depends_on: Sequence[pulumi.Resource]
    ) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(
            parent=parent,
            depends_on=list(depends_on),
            # Pulumi refuses to delete it (a removal from the stack, a destroy) while set.
            protect=vm.protect,
            aliases=[*cls.PLACEMENT_FORMERLY],
        )
