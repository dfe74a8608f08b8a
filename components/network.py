"""RoutedNetwork: a routed prefix, its upstream host and every host's egress path.

Layout for upstream U (DESIGN.md §3, §5):
- every other host H linked to U: table `vm-out`, `ip rule fwmark M table vm-out`, a
  default route in vm-out via U's tunnel address, and the mangle MARK on `vif+`: its VMs
  leave through U;
- U: a catch-all route for the prefix via the (first) peer's tunnel address, with a metric
  above the /32 vif routes, and a /32 at that metric for each VM on a peer, via that
  peer's tunnel address: traffic for a VM that runs elsewhere follows it through the tunnel.
Tables, rules and routes take effect only for marked packets or VMs that are elsewhere,
so they are set up before anything moves. Marks are what switch egress: the Upstream's
cutover sets them at the instant of the switch, and the MangleMark resources that follow
it adopt them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

import pulumi

from components.config import NetworkConfig, StackConfig
from components.routed import config_upstream
from providers.mangle_mark import MangleMark
from providers.policy_rule import PolicyRule
from providers.route import Route
from providers.routing_table import RoutingTable
from providers.upstream import Upstream


def decide_upstream(network: NetworkConfig, config: StackConfig, routed: str | None) -> str:
    """The host the prefix should be routed to after this run; `routed` is where it is
    routed now (components/routed.py), read only where the config leaves it open."""
    decided = config_upstream(network, config)
    if decided is not None:
        return decided
    vm_hosts = {vm.host for vm in config.vms_of(network.name)}
    if routed in config.hosts and (not vm_hosts or routed in vm_hosts):
        return routed  # split (or empty): stay where it is until the last one moves
    for host in config.hosts:  # unrouted or elsewhere: the first host that has VMs
        if host in vm_hosts or not vm_hosts:
            return host
    raise ValueError(f"network {network.name} has no host")


def egress_hosts(config: StackConfig, upstream: str) -> list[str]:
    """Hosts whose VMs must leave through the upstream: those linked to it."""
    return [link.peer_of(upstream) for link in config.links if upstream in link.hosts]


def _ip(interface_address: str) -> str:
    return str(ipaddress.ip_interface(interface_address).ip)


class RoutedNetwork(pulumi.ComponentResource):
    def __init__(
        self,
        network: NetworkConfig,
        config: StackConfig,
        routed: str | None,
        tunnels: Mapping[str, pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("glidepath:components:RoutedNetwork", network.name, {}, opts)
        self.network = network
        self.config = config
        self.upstream = decide_upstream(network, config, routed)
        self.egress = egress_hosts(config, self.upstream)
        upstream_host = config.hosts[self.upstream]
        self.path: list[pulumi.Resource] = []
        name = network.name
        for host_name in self.egress:
            link = config.link_between(host_name, self.upstream)
            assert link is not None
            host = config.hosts[host_name].endpoint()
            after_tunnel = pulumi.ResourceOptions(parent=self, depends_on=[tunnels[link.name]])
            table = RoutingTable(
                f"{name}-{host_name}-table",
                host=host,
                table_id=network.table_id,
                name=network.table_name,
                opts=pulumi.ResourceOptions(parent=self),
            )
            rule = PolicyRule(
                f"{name}-{host_name}-rule",
                host=host,
                priority=network.rule_priority,
                fwmark=network.mark,
                table=network.table_id,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[table]),
            )
            egress = Route(
                f"{name}-{host_name}-egress",
                host=host,
                dst="default",
                via=_ip(link.address_of(self.upstream)),
                dev=f"tun{link.tun}",
                table=network.table_id,
                opts=pulumi.ResourceOptions.merge(
                    after_tunnel, pulumi.ResourceOptions(depends_on=[table])
                ),
            )
            self.path += [table, rule, egress]
        if self.egress:
            # One catch-all: with more peers, VMs of this network may sit on one of them.
            peer = self.egress[0]
            link = config.link_between(peer, self.upstream)
            assert link is not None
            self.path.append(
                Route(
                    f"{name}-{self.upstream}-follow",
                    host=upstream_host.endpoint(),
                    dst=network.prefix,
                    via=_ip(link.address_of(peer)),
                    dev=f"tun{link.tun}",
                    metric=network.tunnel_route_metric,
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[tunnels[link.name]]),
                )
            )
        # The catch-all above reaches only the first peer. A VM on any peer gets its own
        # /32 on the upstream, via that peer's end of their tunnel, at the catch-all's
        # metric. It is part of the path, so it exists before the VM leaves the upstream:
        # while the VM still runs there its vif route (metric 0) wins, and when the VM
        # pauses for the switch the migration's route handover deletes that vif route
        # (providers/plans/handover.py): inbound traffic follows the VM through the tunnel.
        # Moving back to the upstream, the handover routes the /32 to the destination's
        # tap (metric 0) at that same instant, and the stale /32 is deleted at the end of
        # the run. Not covered: a move straight between
        # two non-upstream hosts (this route is switched before the migration, so inbound
        # traffic reaches the target early); move through the upstream instead.
        for vm in config.vms_of(network.name):
            link = config.link_between(vm.host, self.upstream)
            if vm.host == self.upstream or vm.host not in self.egress or link is None:
                continue
            self.path.append(
                Route(
                    f"{name}-{self.upstream}-to-{vm.name}",
                    host=upstream_host.endpoint(),
                    dst=f"{vm.ip}/32",
                    via=_ip(link.address_of(vm.host)),
                    dev=f"tun{link.tun}",
                    metric=network.tunnel_route_metric,
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[tunnels[link.name]]),
                )
            )
        self.marks: list[pulumi.Resource] = []
        self.upstream_resource: Upstream | None = None
        # Where a VM runs or arrives on a non-upstream host and the prefix stays where it
        # is routed now, the marks are part of the path that VM needs in place (even on a
        # host new in this run). Otherwise they follow the Upstream: its cutover sets them
        # at the switch, or it settles them after the moves, and these resources adopt them.
        self.marks_first = routed is not None and routed == self.upstream
        if self.marks_first:
            self._declare_marks(pulumi.ResourceOptions())
            self.path += self.marks

    def _declare_marks(self, extra: pulumi.ResourceOptions) -> None:
        network, config = self.network, self.config
        for host_name in self.egress:
            self.marks.append(
                MangleMark(
                    f"{network.name}-{host_name}-mark",
                    host=config.hosts[host_name].endpoint(),
                    source=network.prefix,
                    in_interface="vif+",
                    mark=network.mark,
                    comment=f"glidepath {network.name}",
                    opts=pulumi.ResourceOptions.merge(pulumi.ResourceOptions(parent=self), extra),
                )
            )

    def finish(self, placements: Sequence[pulumi.Resource]) -> None:
        """Declare the cutover after every placement of this network, then the marks."""
        network, config = self.network, self.config
        self.upstream_resource = Upstream(
            network.name,
            network=network.name,
            prefix=network.prefix,
            hosts={name: host.upstream_endpoint() for name, host in config.hosts.items()},
            upstream=self.upstream,
            marked=self.egress,
            mark=network.mark,
            cutover=network.cutover,
            first_packet_timeout_s=network.cutover.watch_s,
            vm_addresses=[vm.ip for vm in config.vms_of(network.name)],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*placements, *self.path]),
        )
        if not self.marks_first:
            self._declare_marks(pulumi.ResourceOptions(depends_on=[self.upstream_resource]))
        self.register_outputs({"upstream": self.upstream})

    @property
    def last_cutover(self) -> pulumi.Output[Any]:
        """The Upstream's record of its last cutover (declared by `finish`)."""
        if self.upstream_resource is None:
            raise RuntimeError(f"{self.network.name}: finish() declares the Upstream first")
        return self.upstream_resource.last_cutover
