"""HypervisorHost: what glidepath keeps on every hypervisor whatever runs on it."""

from __future__ import annotations

import pulumi

from components.config import HostConfig, StackConfig
from providers.sysctl import Sysctl
from providers.vif_route_script import VifRouteScript

# The blog's routed setup: forward between vifs, uplink and tunnel, and no reverse-path
# filter (a moved VM's packets arrive through the tunnel, not where its route points).
FORWARDING_SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
}


class HypervisorHost(pulumi.ComponentResource):
    def __init__(
        self,
        host: HostConfig,
        config: StackConfig,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("glidepath:components:HypervisorHost", host.name, {}, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.config = host
        self.sysctls = [
            Sysctl(f"{host.name}-{key}", host=host.endpoint(), key=key, value=value, opts=child)
            for key, value in FORWARDING_SYSCTLS.items()
        ]
        # Every vif of the fleet: any VM may arrive on any host.
        self.vif_script = VifRouteScript(
            f"{host.name}-vif-route",
            host=host.endpoint(),
            routes={vm.vif: vm.ip for vm in config.vms.values()},
            opts=child,
        )
        self.ready: list[pulumi.Resource] = [*self.sysctls, self.vif_script]
        self.register_outputs({"address": host.address})
