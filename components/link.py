"""HostLink: the blog's `ssh -w` tunnel between two hosts."""

from __future__ import annotations

import pulumi

from components.config import LinkConfig, StackConfig
from providers.tunnel import Tunnel


class HostLink(pulumi.ComponentResource):
    def __init__(
        self,
        link: LinkConfig,
        config: StackConfig,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("glidepath:components:HostLink", link.name, {}, opts)
        a, b = link.hosts
        self.tunnel = Tunnel(
            link.name,
            host=config.hosts[a].endpoint(),
            peer=config.hosts[b].endpoint(),
            tun=link.tun,
            address=link.addresses[0],
            peer_address=link.addresses[1],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({})
