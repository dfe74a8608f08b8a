"""Where a network's prefix is routed now: read from the provider's network, never from
this stack's own checkpoint.

Two decisions of the program depend on it. `upstream: auto` leaves the prefix where it
is while the network's VMs are split across hosts, and a host's egress mark may be set
before the VMs move only if the prefix is not about to leave that host. Both matter only
when the config puts a VM of the network on a host other than its upstream (or cannot
name the upstream), so only then is anything read, and read from reality: the cutover
backend where it can tell (`lab-router`, `hetzner-robot`), otherwise (`manual`) the
egress marks glidepath left on the hosts, which are set on every host but the upstream.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from pulumi.errors import RunError

from components.config import NetworkConfig, StackConfig
from providers.cutover import CutoverError
from providers.facts import mangle_mark as mark_facts
from providers.plans import mangle_mark as mark_plans
from providers.schema.upstream import LabRouterCutover
from providers.transport import Endpoint, SshCredentials, TransportError


class RoutedHostError(RunError):
    """The program needs to know where a prefix is routed now and could not find out."""


def config_upstream(network: NetworkConfig, config: StackConfig) -> str | None:
    """The upstream the config alone decides: a named host, or under `auto` the one host
    all the network's VMs are on; None while they are split or there are none."""
    if network.upstream != "auto":
        return network.upstream
    vm_hosts = {vm.host for vm in config.vms_of(network.name)}
    return vm_hosts.pop() if len(vm_hosts) == 1 else None


def needs_routed_host(network: NetworkConfig, config: StackConfig) -> bool:
    """True where the config leaves the upstream open, or puts a VM on another host (that
    host's egress mark must then be in place before the VM arrives, unless a cutover is
    about to move the prefix off it)."""
    upstream = config_upstream(network, config)
    return upstream is None or any(vm.host != upstream for vm in config.vms_of(network.name))


def host_by_address(config: StackConfig, address: str | None) -> str | None:
    """The host whose main IP (where the provider routes the prefix) is `address`."""
    for name, host in config.hosts.items():
        if host.main_address == address:
            return name
    return None


def unmarked_host(config: StackConfig, marked: Mapping[str, bool]) -> str | None:
    """The one host without the network's egress mark whose linked peers all have it: the
    upstream glidepath settled last (None when the marks do not say)."""
    candidates = []
    for name in config.hosts:
        peers = [link.peer_of(name) for link in config.links if name in link.hosts]
        if peers and not marked.get(name) and all(marked.get(peer) for peer in peers):
            candidates.append(name)
    return candidates[0] if len(candidates) == 1 else None


def _credentials(raw_ssh: Any) -> SshCredentials:
    from providers import transport

    return transport.credentials_from_config(raw_ssh)


def _read_marks(
    network: NetworkConfig, config: StackConfig, run: Callable[[str, list[str]], str]
) -> dict[str, bool]:
    rule = mark_plans.desired_rule(
        "PREROUTING", network.prefix, "vif+", network.mark, f"glidepath {network.name}"
    )
    key = mark_plans.rule_key(rule)
    return {
        name: any(
            mark_plans.rule_key(found) == key
            for found in mark_facts.process(run(name, mark_facts.command()))
        )
        for name in config.hosts
    }


def routed_host(
    network: NetworkConfig,
    config: StackConfig,
    raw_ssh: Any,
    raw_robot: Any,
) -> str | None:
    """The host the network's prefix is routed to now (None: unrouted, or cannot tell)."""
    from providers import transport

    kind = network.cutover.kind
    try:
        if isinstance(network.cutover, LabRouterCutover):
            from providers.cutover.lab_router import LabRouter

            router = network.cutover.router
            endpoint = Endpoint(router.name, router.address, router.port, router.user)
            session = transport.session(endpoint, _credentials(raw_ssh))
            return host_by_address(config, LabRouter(session, network.prefix).current())
        if kind == "hetzner-robot":
            from providers.cutover.hetzner_robot import HetznerRobot

            robot = json.loads(raw_robot) if isinstance(raw_robot, str) else raw_robot
            backend = HetznerRobot(network.cutover.model_dump(), network.prefix, robot)
            return host_by_address(config, backend.current())
        credentials = _credentials(raw_ssh)

        def run(host: str, argv: list[str]) -> str:
            spec = config.hosts[host]
            endpoint = Endpoint(host, spec.address, spec.port, spec.user)
            return transport.session(endpoint, credentials).run(argv).stdout

        return unmarked_host(config, _read_marks(network, config, run))
    except (TransportError, CutoverError) as err:
        vm_hosts = sorted({vm.host for vm in config.vms_of(network.name)})
        raise RoutedHostError(
            f"glidepath:networks.{network.name}: cannot tell where {network.prefix} is "
            f"routed now ({kind}): {err}. Its VMs are on {', '.join(vm_hosts) or 'no host'}, "
            "so glidepath needs that to keep the prefix and the egress marks where they are"
        ) from err
    finally:
        transport.close_all()
