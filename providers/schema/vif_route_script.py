"""VifRouteScript's inputs: which VM address each vif routes to, on every host."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

from providers import validate
from providers.schema.fields import (
    DEFAULT_OWNER,
    InterfaceName,
    Ipv4Address,
    Owner,
    ResourceArgs,
    checked,
)
from providers.schema.host import Endpoint
from providers.validate import Invalid

#: Where libvirt runs it for an `<interface type='ethernet'>` (the blog's path).
DEFAULT_PATH = "/etc/libvirt/scripts/vif-route"


def _one_vif_per_address(routes: dict[str, str]) -> dict[str, str]:
    """Canonical: sorted by vif; an address is one VM's, so one vif's."""
    by_address: dict[str, str] = {}
    for vif, address in sorted(routes.items()):
        if address in by_address:
            raise Invalid(f"{by_address[address]} and {vif} both route {address}")
        by_address[address] = vif
    return {vif: address for address, vif in by_address.items()}


class VifRouteScriptArgs(ResourceArgs):
    host: Endpoint
    path: Annotated[str, checked(validate.file_path)] = DEFAULT_PATH
    routes: Annotated[dict[InterfaceName, Ipv4Address], AfterValidator(_one_vif_per_address)]
    """vif -> the VM's address; a vif is one tap, so no wildcard."""
    owner: Owner = DEFAULT_OWNER
    """The stack whose routes these are (one file of routes per stack beside the script)."""
