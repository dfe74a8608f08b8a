"""HypervisorHost: everything glidepath keeps on one hypervisor."""

from __future__ import annotations

import pulumi

from components.config import HostConfig
from providers.sysctl import Sysctl

# The blog's routed setup: forward between vifs and the uplink, and no reverse-path
# filter (replies to moved VMs arrive on the tunnel, not where the route points).
FORWARDING_SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
}


class HypervisorHost(pulumi.ComponentResource):
    def __init__(self, name: str, host: HostConfig, opts: pulumi.ResourceOptions | None = None):
        super().__init__("glidepath:components:HypervisorHost", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.sysctls = [
            Sysctl(f"{name}-{key}", host=host.endpoint(), key=key, value=value, opts=child)
            for key, value in FORWARDING_SYSCTLS.items()
        ]
        self.register_outputs({})
