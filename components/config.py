"""The stack config, read once into typed structures (`glidepath:*` keys)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi


@dataclass(frozen=True)
class HostConfig:
    name: str
    address: str
    port: int = 22
    user: str = "root"
    uplink: str = "br0"

    def endpoint(self) -> dict[str, object]:
        """The `host` input every host-level resource takes."""
        return {"name": self.name, "address": self.address, "port": self.port, "user": self.user}


@dataclass(frozen=True)
class StackConfig:
    hosts: dict[str, HostConfig]


def load_config() -> StackConfig:
    config = pulumi.Config("glidepath")
    raw_hosts = config.require_object("hosts")
    ssh = config.get_object("ssh") or {}
    user = str(ssh.get("user", "root"))
    hosts = {
        name: HostConfig(
            name=name,
            address=str(spec["address"]),
            port=int(spec.get("port", 22)),
            user=str(spec.get("user", user)),
            uplink=str(spec.get("uplink", "br0")),
        )
        for name, spec in raw_hosts.items()
    }
    return StackConfig(hosts=hosts)
