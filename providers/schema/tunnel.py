"""Tunnel's inputs: the blog's `ssh -w N:N` link between two hosts, and its addresses."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import model_validator

from providers.schema.fields import Between, ResourceArgs, TunnelAddress, at
from providers.schema.host import Endpoint
from providers.validate import Invalid

#: N in `ssh -w N:N`: the tunN device on both ends.
Tun = Annotated[int, Between(0, 255)]


def check_ends(address: str, peer_address: str) -> None:
    """Both ends of a tunnel: two addresses of one network."""
    ours, theirs = ipaddress.ip_interface(address), ipaddress.ip_interface(peer_address)
    if ours.network != theirs.network:
        raise Invalid(f"{peer_address} is not in {address}'s network {ours.network}")
    if ours.ip == theirs.ip:
        raise Invalid(f"{peer_address} is the other end's own address")


class TunnelArgs(ResourceArgs):
    host: Endpoint
    """The end that runs ssh."""
    peer: Endpoint
    tun: Tun
    address: TunnelAddress
    """`host`'s end, with the prefix length both ends share."""
    peer_address: TunnelAddress
    state: Literal["up"] = "up"

    @model_validator(mode="after")
    def _two_ends(self) -> TunnelArgs:
        found = []
        try:
            check_ends(self.address, self.peer_address)
        except Invalid as err:
            found.append(("peer_address", str(err)))
        if self.host.address == self.peer.address or self.host.name == self.peer.name:
            found.append(("peer", "the peer must be another host than `host`"))
        if found:
            raise at(*found)
        return self
