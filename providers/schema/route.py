"""Route's inputs: `ip route replace <dst> [via X] [dev D] table T metric M` (IPv4)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import model_validator

from providers import validate
from providers.schema.fields import Between, InterfaceName, Ipv4Address, ResourceArgs, at, checked
from providers.schema.host import Endpoint
from providers.schema.routing_table import TableRef

DEFAULT_TABLE = "main"
DEFAULT_METRIC = 0


def _destination(value: Any) -> str:
    """`default` or an IPv4 prefix, as iproute2 prints it (0.0.0.0/0 is `default`)."""
    dst = validate.route_destination(value)
    return "default" if dst in ("default", "0.0.0.0/0") else validate.ipv4_prefix(dst)


class RouteArgs(ResourceArgs):
    host: Endpoint
    dst: Annotated[str, checked(_destination)]
    via: Ipv4Address | None = None
    dev: InterfaceName | None = None
    table: TableRef = DEFAULT_TABLE
    metric: Annotated[int, Between(0, 0xFFFFFFFF)] = DEFAULT_METRIC

    @model_validator(mode="after")
    def _somewhere(self) -> RouteArgs:
        if self.via is None and self.dev is None:
            raise at(("via", "give a gateway (via), a device (dev), or both"))
        return self
