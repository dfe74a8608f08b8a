"""Upstream's inputs: where the provider routes a network's prefix, and the cutover that
moves it (`lab-router`, `hetzner-robot` with `glidepath:robot`'s credentials, `manual`)."""

from __future__ import annotations

import ipaddress
import urllib.parse
from contextvars import ContextVar
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_serializer,
    model_validator,
)

from providers.schema.fields import (
    Address,
    Between,
    HostName,
    Ipv4Prefix,
    Mark,
    Model,
    NetworkName,
    ResourceArgs,
    SecretText,
    at,
    checked,
)
from providers.schema.host import Endpoint, UpstreamHost
from providers.validate import Invalid

#: How long the new upstream waits for the first packet that arrives directly, where the
#: backend switches at once (the lab's router) ...
FIRST_PACKET_TIMEOUT_S = 60
#: ... where a person switches (a web console; a support ticket needs more, set it) ...
MANUAL_FIRST_PACKET_TIMEOUT_S = 600
#: ... and, beyond a backend's own bound on its switch call, what its routing may take.
AFTER_SWITCH_S = 60
FirstPacketTimeout = Annotated[int, Between(1, 3600)]
DEFAULT_BASE_URL = "https://robot-ws.your-server.de"
#: The bound on one Robot request; the switch returns once Robot has moved the routing,
#: which can take a while (community.hrobot's failover_ip module waits 180 s too).
ROBOT_TIMEOUT_S = Between(1, 600)
DEFAULT_ROBOT_TIMEOUT_S = 180


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def robot_url(value: Any) -> str:
    """The Robot endpoint: https, or http to a loopback address (the tests' local server)."""
    if not isinstance(value, str) or not value:
        raise Invalid(f"must be a URL such as {DEFAULT_BASE_URL}")
    if "@" in value:
        # Never echo such a URL: it may hold a user and password (and a '#' or '/' in them
        # confuses URL parsing). Credentials belong in glidepath:robot.
        raise Invalid("must not contain a user or password; put them in glidepath:robot")
    parts = urllib.parse.urlsplit(value)
    host = parts.hostname or ""
    if not host:
        raise Invalid(f"{value!r} has no host")
    if parts.query or parts.fragment:
        raise Invalid(f"{value!r} must not have a query or fragment")
    if parts.scheme == "https" or (parts.scheme == "http" and is_loopback(host)):
        return value.rstrip("/")
    raise Invalid(
        f"{value!r} must use https (Robot's web service is https only; plain http is "
        "accepted for loopback test servers only)"
    )


# Pydantic validates a cutover without the network around it; the failover IP must lie in
# the network's prefix, so the network hands its prefix down while its cutover validates.
_prefix: ContextVar[str | None] = ContextVar("prefix", default=None)


def _in_the_prefix(ip: str) -> str:
    prefix = _prefix.get()
    if prefix and ipaddress.ip_address(ip) not in ipaddress.ip_network(prefix):
        raise Invalid(f"{ip} is outside the network's prefix {prefix}")
    return ip


def _of_the_prefix(value: Any, validate: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
    token = _prefix.set((info.data or {}).get("prefix"))
    try:
        return validate(value)
    finally:
        _prefix.reset(token)


class _Cutover(Model):
    kind: str
    first_packet_timeout_s: FirstPacketTimeout | None = None
    """How long the new upstream waits for the first packet that arrives directly (the
    watch starts before the switch, so it must outlast the backend's switch call);
    default: `watch_s`."""

    def switch_bound_s(self) -> int:
        """How long the backend's switch call may take (0: at once)."""
        return 0

    def default_watch_s(self) -> int:
        return FIRST_PACKET_TIMEOUT_S

    @property
    def watch_s(self) -> int:
        return self.first_packet_timeout_s or self.default_watch_s()

    @model_validator(mode="after")
    def _outlasts_the_switch(self) -> _Cutover:
        bound = self.switch_bound_s()
        if self.first_packet_timeout_s is not None and self.first_packet_timeout_s <= bound:
            raise at(
                (
                    "first_packet_timeout_s",
                    f"{self.first_packet_timeout_s} s must exceed timeout_s ({bound} s): the "
                    "watch for the first direct packet starts before the switch, which may "
                    "take that long",
                )
            )
        return self

    @model_serializer(mode="wrap")
    def _as_given(self, dump: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Dumped as the stack gives it, the Upstream's `cutover` input: a default filled in
        # here would show as an update of every Upstream stored without it.
        return {key: value for key, value in dump(self).items() if key in self.model_fields_set}


class LabRouterCutover(_Cutover):
    """The lab's `core` plays the provider's router: `ip route replace` over SSH."""

    kind: Literal["lab-router"]
    router: Endpoint


class HetznerRobotCutover(_Cutover):
    """The Robot web service's failover switch (credentials: glidepath:robot)."""

    kind: Literal["hetzner-robot"]
    base_url: Annotated[str, checked(robot_url)] = DEFAULT_BASE_URL
    timeout_s: Annotated[int, ROBOT_TIMEOUT_S] = DEFAULT_ROBOT_TIMEOUT_S
    """The bound on one Robot request, in seconds."""
    failover_ip: Annotated[Address, AfterValidator(_in_the_prefix)] | None = None
    """The failover IP, or a failover net's address (default: the prefix's)."""

    def switch_bound_s(self) -> int:
        return self.timeout_s

    def default_watch_s(self) -> int:
        return self.timeout_s + AFTER_SWITCH_S


class ManualCutover(_Cutover):
    """A person switches the route at the provider; glidepath waits for the first packet."""

    kind: Literal["manual"]

    def default_watch_s(self) -> int:
        return MANUAL_FIRST_PACKET_TIMEOUT_S


Cutover = Annotated[
    LabRouterCutover | HetznerRobotCutover | ManualCutover,
    Field(discriminator="kind"),
    WrapValidator(_of_the_prefix),
]


#: What the example stack's Robot secrets hold until a user sets theirs (and what a stack
#: file keeps where only the approved `up` gets the real ones: docs/gitops.md).
PLACEHOLDER = "REPLACE-ME"


class Robot(Model):
    """A Robot *web service* user (not the Robot login), as secrets."""

    user: SecretText | None = Field(None, repr=False)
    password: SecretText | None = Field(None, repr=False)

    @property
    def placeholders(self) -> bool:
        """Still the example's placeholders: Robot would refuse them (and count a failed
        login against the caller's address), so they are never sent."""
        return any(
            isinstance(value, str) and value.startswith(PLACEHOLDER)
            for value in (self.user, self.password)
        )

    @model_validator(mode="after")
    def _both(self) -> Robot:
        found = []
        if not self.user:
            found.append(("user", "is missing: a Robot web service user"))
        elif isinstance(self.user, str) and ":" in self.user:
            found.append(("user", "must not contain ':' (HTTP basic auth)"))
        if not self.password:
            found.append(("password", "is missing"))
        if found:
            raise at(*found)
        return self


class UpstreamArgs(ResourceArgs):
    network: NetworkName
    prefix: Ipv4Prefix
    hosts: Annotated[dict[str, UpstreamHost], Field(min_length=1)]
    upstream: HostName
    """The host the prefix is routed to after this run."""
    marked: list[HostName] = Field(default_factory=list)
    """The hosts whose VMs leave through the upstream (the egress mark)."""
    mark: Mark
    cutover: Cutover
    first_packet_timeout_s: FirstPacketTimeout = FIRST_PACKET_TIMEOUT_S
    vm_addresses: list[Address] = Field(default_factory=list)

    @model_validator(mode="after")
    def _upstream_is_a_host(self) -> UpstreamArgs:
        if self.upstream not in self.hosts:
            raise at(("upstream", f"{self.upstream!r} is not one of the hosts"))
        return self
