"""HypervisorHost: what glidepath keeps on every hypervisor whatever runs on it.

First the one-shot bootstrap (packages, `PermitTunnel yes`, directories), a
`pulumi_command.remote.Command`: it runs once, and again only if its command changes.
Then glidepath's own resources, which diff and read back what they own. The sysctls and
the vif-route script are shared with any other stack on the host: each resource holds
them as this stack (`<project>.<stack>`), and they outlast it while another holds them.
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi_command import remote

from components.config import HostConfig, StackConfig
from providers import transport
from providers.plans import host_bootstrap
from providers.sysctl import Sysctl
from providers.vif_route_script import VifRouteScript

# The blog's routed setup: forward between vifs, uplink and tunnel, and no reverse-path
# filter (a moved VM's packets arrive through the tunnel, not where its route points).
FORWARDING_SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
}


def connection(host: HostConfig, ssh_access: Any) -> remote.ConnectionArgs:
    """How the remote Command reaches `host`: glidepath:ssh's key (kept secret) and the
    host's key from its known_hosts, pinned (the command provider checks nothing else)."""
    credentials = transport.credentials_from_config(ssh_access)
    host_key = transport.host_key_line(credentials.known_hosts, host.address, host.port)
    if host_key is None:
        raise transport.HostKeyError(
            f"glidepath:ssh.known_hosts has no key for {host.name} "
            f"({transport.known_hosts_name(host.address, host.port)})"
        )
    return remote.ConnectionArgs(
        host=host.address,
        port=host.port,
        user=host.user,
        private_key=pulumi.Output.secret(credentials.private_key),
        host_key=host_key,
        # A refused key or login does not get better with retries (the default is 10).
        dial_error_limit=3,
    )


class HypervisorHost(pulumi.ComponentResource):
    def __init__(
        self,
        host: HostConfig,
        config: StackConfig,
        ssh_access: Any,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("glidepath:components:HypervisorHost", host.name, {}, opts)
        self.config = host
        self.bootstrap = remote.Command(
            f"{host.name}-bootstrap",
            connection=connection(host, ssh_access),
            create=host_bootstrap.command(host.sshd_config),
            opts=pulumi.ResourceOptions(parent=self),
        )
        child = pulumi.ResourceOptions(parent=self, depends_on=[self.bootstrap])
        # Other stacks may share the host and these artifacts: each holds them as itself.
        owner = f"{pulumi.get_project()}.{pulumi.get_stack()}"
        self.sysctls = [
            Sysctl(
                f"{host.name}-{key}",
                host=host.endpoint(),
                key=key,
                value=value,
                owner=owner,
                opts=child,
            )
            for key, value in FORWARDING_SYSCTLS.items()
        ]
        # Every vif of the fleet: any VM may arrive on any host.
        self.vif_script = VifRouteScript(
            f"{host.name}-vif-route",
            host=host.endpoint(),
            routes={vm.vif: vm.ip for vm in config.vms.values()},
            owner=owner,
            opts=child,
        )
        self.ready: list[pulumi.Resource] = [self.bootstrap, *self.sysctls, self.vif_script]
        self.register_outputs({"address": host.address})
