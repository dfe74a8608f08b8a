"""The stack config (`glidepath:*`), parsed once into typed structures.

Everything a user can get wrong is checked here, before any resource is declared, so a
malformed stack fails `pulumi preview` with a message naming the field and no command
reaches a host. The structures are the schema's models (providers/schema/stack.py, built
from each resource's inputs model); here is only what the program alone knows: which keys
the stack holds as secrets, and whether glidepath:ssh's host keys cover every host.
`parse_config` is pure (a dict in, a StackConfig or ConfigError out), so it is
tested directly and reused by tools that validate a stack without the engine.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from pulumi.errors import RunError
from pydantic import ValidationError

from providers import transport
from providers.schema.errors import Problem, problems
from providers.schema.host import Host
from providers.schema.stack import Link, Network, Parts, Stack, Vm, across

HostConfig = Host
LinkConfig = Link
NetworkConfig = Network
VmConfig = Vm
StackConfig = Stack
#: The keys of glidepath's stack config: glidepath:hosts, glidepath:ssh, ...
KEYS = tuple(Stack.model_fields)


class ConfigError(RunError, ValueError):
    """One or more fields of the stack config are wrong; each line names its field.

    A RunError: the engine shows the message alone, without the program's traceback.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid stack config:\n  " + "\n  ".join(problems))


def parse_config(raw: Mapping[str, Any], secrets: Collection[str] | None = None) -> StackConfig:
    """`raw` maps short keys (hosts, ssh, links, networks, vms, robot) to their values.

    `ssh` is required when `raw` has it as a key, as `load_config` always gives it, and
    `robot` then too where a network uses hetzner-robot. `secrets` names the short keys the stack
    holds as secrets, and a private key or password outside them is refused; None skips
    that check (a caller that cannot tell, such as a stack file read as YAML).
    """
    stack: Stack | None = None
    try:
        stack = Stack.model_validate(raw)
        found, parts = [], Parts.of(stack)
    except ValidationError as err:
        found, parts = problems(Stack, err), Parts.salvage(raw)
    found += across(parts) + _host_keys(parts) + _secrecy(parts, secrets)
    if found:
        # Not chained: pydantic's own error would print the values, secrets included.
        raise ConfigError([f"glidepath:{path}: {reason}" for path, reason in found]) from None
    assert stack is not None
    return stack


def _host_keys(parts: Parts) -> list[Problem]:
    """Inline known_hosts must name every host: an unknown key is refused at connect time
    anyway, but the preview is where a user should learn it."""
    known = parts.ssh.known_hosts if parts.ssh else None
    if not known:
        return []
    found: list[Problem] = []
    for name, host in parts.hosts.items():
        try:
            present = transport.has_host_key(known, host.address, host.port)
        except Exception:
            return [("ssh.known_hosts", "is not known_hosts text (host keytype base64)")]
        if not present:
            where = transport.known_hosts_name(host.address, host.port)
            found.append(("ssh.known_hosts", f"has no key for host {name} ({where})"))
    return found


def _secrecy(parts: Parts, secrets: Collection[str] | None) -> list[Problem]:
    """A private key or a password the stack holds in plain text is refused."""
    if secrets is None:
        return []  # cannot tell (a stack file read as YAML holds secrets as `secure:`)
    found: list[Problem] = []
    if parts.ssh and isinstance(parts.ssh.private_key, str) and "ssh" not in secrets:
        found.append(
            (
                "ssh.private_key",
                "must be a secret (pulumi config set --secret --path glidepath:ssh.private_key)",
            )
        )
    if parts.uses_robot and parts.robot and "robot" not in secrets:
        found.append(
            (
                "robot",
                "must be a secret (pulumi config set --secret --path glidepath:robot.password)",
            )
        )
    return found


def load_config() -> StackConfig:
    """Read `glidepath:*` from the running stack (inside the Pulumi program)."""
    import pulumi
    from pulumi.runtime.config import is_config_secret

    config = pulumi.Config("glidepath")
    # glidepath:ssh and glidepath:robot hold secrets: they are checked here (present,
    # well-formed, secret) but only the providers use them (configure()).
    raw = {key: config.get_object(key) for key in KEYS}
    secrets = {key for key in KEYS if is_config_secret(f"glidepath:{key}")}
    return parse_config(raw, secrets)


def load_access() -> tuple[Any, Any]:
    """`glidepath:ssh` and `glidepath:robot` as stored (secrets decrypted), for the few
    reads the program makes itself (components/routed.py); never printed or exported."""
    import pulumi

    from providers.cutover.hetzner_robot import robot_credentials

    config = pulumi.Config("glidepath")
    return config.get_object("ssh"), robot_credentials(config.get_object("robot"))
