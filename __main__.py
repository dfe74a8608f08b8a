"""glidepath's Pulumi program: load the stack config, wire the components, export.

Order (by dependencies): hosts (sysctls, vif script) and links (tunnels); each network's
path (tables, rules, routes); the VMs (placement: a host change live-migrates); then per
network the Upstream (the cutover) and the egress marks that follow it.
"""

import pulumi

from components.config import load_access, load_config
from components.host import HypervisorHost
from components.link import HostLink
from components.network import RoutedNetwork
from components.routed import needs_routed_host, routed_host
from components.summary import summary
from components.vm import VirtualMachine

config = load_config()
ssh_access, robot_access = load_access()
hosts = {name: HypervisorHost(host, config, ssh_access) for name, host in config.hosts.items()}
links = {link.name: HostLink(link, config) for link in config.links}
tunnels = {name: link.tunnel for name, link in links.items()}
# Where each prefix is routed now, read from reality only where the config leaves the
# upstream open or puts VMs elsewhere (components/routed.py); never from this stack's state.
routed = {
    name: routed_host(net, config, ssh_access, robot_access)
    if needs_routed_host(net, config)
    else None
    for name, net in config.networks.items()
}
networks = {
    name: RoutedNetwork(net, config, routed[name], tunnels) for name, net in config.networks.items()
}
vms = {
    name: VirtualMachine(
        vm,
        config,
        depends_on=[
            *hosts[vm.host].ready,
            *tunnels.values(),
            *networks[vm.network].path,
        ],
    )
    for name, vm in config.vms.items()
}
for name, network in networks.items():
    network.finish([vms[vm.name].placement for vm in config.vms_of(name)])

pulumi.export("upstreams", {name: network.upstream for name, network in networks.items()})
pulumi.export(
    "vms", {name: vm.placement.host.apply(lambda h: h["name"]) for name, vm in vms.items()}
)
last_migrations = {name: vm.placement.last_migration for name, vm in vms.items()}
last_cutovers = {name: network.last_cutover for name, network in networks.items()}
pulumi.export("last_migrations", last_migrations)
pulumi.export("last_cutovers", last_cutovers)
# The closing summary: the CLI prints outputs last, so every `up` ends with what moved.
pulumi.export(
    "summary",
    pulumi.Output.all(
        pulumi.Output.from_input(last_migrations), pulumi.Output.from_input(last_cutovers)
    ).apply(lambda both: summary(both[0], both[1])),
)
