"""How glidepath reaches a host: the `host` input of every host-level resource, the
stack's `glidepath:hosts` entries, and `glidepath:ssh`, the login they share."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from providers import validate
from providers.schema.fields import (
    AbsolutePath,
    Address,
    Between,
    HostName,
    InterfaceName,
    Model,
    SecretText,
    at,
    checked,
)
from providers.validate import Invalid

DEFAULT_PORT = 22
DEFAULT_USER = "root"
#: Where the routed prefix arrives (the blog's `tcpdump -i br0`).
DEFAULT_UPLINK = "br0"
#: Where a host's sshd reads its config (the host bootstrap allows tunnels there).
DEFAULT_SSHD_CONFIG = "/etc/ssh/sshd_config"

Port = Annotated[int, Between(1, 65535)]
SshUser = Annotated[str, checked(validate.name, what="SSH user")]


class Endpoint(Model):
    """A host as a resource reaches it over SSH."""

    name: HostName
    address: Address
    port: Port = DEFAULT_PORT
    user: SshUser = DEFAULT_USER


class UplinkEndpoint(Endpoint):
    """A host the prefix may be routed to, and the interface it arrives on there."""

    uplink: InterfaceName = DEFAULT_UPLINK


class UpstreamHost(UplinkEndpoint):
    """A host as the Upstream sees it: also the address the provider routes the prefix to."""

    main_ip: Address | None = None
    """Where the provider routes the prefix (Robot: the server's main IP); default: address
    (`main_address` reads an entry of it)."""

    @model_serializer(mode="wrap")
    def _main_ip_as_given(self, dump: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Left out where unset: an Upstream stored before main_ip existed shows no change.
        fields: dict[str, Any] = dump(self)
        if fields.get("main_ip") is None:
            fields.pop("main_ip", None)
        return fields


def main_address(host: Mapping[str, Any]) -> str:
    """The address the provider routes the prefix to, of an Upstream's `hosts` entry."""
    return str(host.get("main_ip") or host["address"])


class Keyed(Model):
    """An entry of a mapping that names it (`glidepath:hosts.<name>`): its key is its name."""

    _name: str = PrivateAttr("")

    @property
    def name(self) -> str:
        return self._name

    def named(self, name: str) -> Self:
        self._name = name
        return self


class Host(Keyed):
    """A hypervisor glidepath manages, reached over SSH as root by key."""

    address: Address
    """Where Pulumi reaches its sshd (and, unless main_ip is set, where the provider routes
    the prefix)."""
    main_ip: Address | None = None
    """The address the provider routes the prefix to: for Robot, the server's main IP
    (its failover switch takes nothing else). Default: address; set it where Pulumi
    reaches the server over another address (a VPN, a management network)."""
    port: Port = DEFAULT_PORT
    user: SshUser = DEFAULT_USER
    """Default: glidepath:ssh.user."""
    uplink: InterfaceName = DEFAULT_UPLINK
    """Where the routed prefix arrives."""
    sshd_config: AbsolutePath = DEFAULT_SSHD_CONFIG
    """The host's sshd config (the host bootstrap sets `PermitTunnel yes` there)."""

    @property
    def main_address(self) -> str:
        """Where the provider routes the prefix: main_ip, or address where it is unset."""
        return self.main_ip or self.address

    def endpoint(self) -> dict[str, Any]:
        """The `host` input every host-level resource takes."""
        return Endpoint.model_construct(
            name=self.name, address=self.address, port=self.port, user=self.user
        ).model_dump()

    def upstream_endpoint(self) -> dict[str, Any]:
        """The Upstream's `hosts` entry: the endpoint, the uplink, and main_ip where set."""
        return UpstreamHost.model_construct(
            **self.endpoint(), uplink=self.uplink, main_ip=self.main_ip
        ).model_dump()


_PRIVATE_KEY = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.+-----END [A-Z0-9 ]*PRIVATE KEY-----", re.DOTALL
)


def _private_key_text(key: Any) -> Any:
    # The form only (a public key or a path pasted here is the usual slip); the transport
    # parses the key when it first connects. Never echoed.
    if isinstance(key, str) and key and not _PRIVATE_KEY.search(key):
        raise Invalid("is not a private key's text (-----BEGIN ... PRIVATE KEY----- ...)")
    return key


class Ssh(Model):
    """How Pulumi logs in to every host (read by the providers; never in their state)."""

    user: SshUser = DEFAULT_USER
    """Every host's user, unless the host sets its own."""
    private_key: Annotated[SecretText, AfterValidator(_private_key_text)] | None = Field(
        None, repr=False
    )
    """The key's text, as a secret (pulumi config set --secret --path ...private_key < key)."""
    private_key_path: AbsolutePath | None = None
    """Or a key file on the machine that runs Pulumi (like ssh -i)."""
    known_hosts: str | None = None
    """The hosts' public keys, as known_hosts text (ssh-keyscan)."""
    known_hosts_path: AbsolutePath | None = None
    """Or a known_hosts file on the machine that runs Pulumi."""

    @model_validator(mode="after")
    def _one_key_and_the_host_keys(self) -> Ssh:
        found = []
        if self.private_key and self.private_key_path:
            found.append(("", "set private_key or private_key_path, not both"))
        elif not (self.private_key or self.private_key_path):
            found.append(
                (
                    "private_key",
                    "is missing: set it as a secret (pulumi config set --secret --path "
                    "glidepath:ssh.private_key < key), or private_key_path",
                )
            )
        if self.known_hosts and self.known_hosts_path:
            found.append(("", "set known_hosts or known_hosts_path, not both"))
        elif not (self.known_hosts or self.known_hosts_path):
            found.append(("known_hosts", "is missing: the hosts' public keys (ssh-keyscan)"))
        if found:
            raise at(*found)
        return self
