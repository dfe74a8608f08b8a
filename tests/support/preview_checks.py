"""What a `pulumi preview` of a fresh stack checks, without the engine or any host.

A preview runs the program (`load_config` -> `parse_config`: a bad field fails here), then
for each resource the provider process unpickles the dynamic provider from its
`__provider` input, calls `configure` with the whole stack config and `check` with the
inputs. This runs glidepath's own `__main__.py` under Pulumi's mocks, records every
resource it declares, and does those provider steps on the recorded inputs (the mocks
themselves never call providers). Nothing here reaches a host: `check` and `configure`
never connect.
"""

from __future__ import annotations

import base64
import json
import runpy
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import dill
import pulumi
from pulumi.dynamic import ConfigureRequest, ResourceProvider
from pulumi.dynamic.config import Config as ProviderConfig
from pulumi.runtime import settings
from pulumi.runtime.stack import wait_for_rpcs
from pulumi.runtime.sync_await import _sync_await

from engine import PROJECT_ROOT

PROJECT = "glidepath"


@dataclass
class Declared:
    """One resource the program declared: its type, name, inputs and, for a dynamic
    resource, its configured provider and what `check` made of the inputs."""

    type: str
    name: str
    inputs: dict[str, Any]
    provider: ResourceProvider | None = None
    checked: dict[str, Any] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return self.type.rsplit(":", 1)[-1]


class _Recorder(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.declared: list[Declared] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        inputs = dict(args.inputs)
        self.declared.append(Declared(args.typ, args.name, inputs))
        return f"{args.name}-id", inputs

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


def _unsecret(value: Any) -> Any:
    # A secret input reaches the mocks as {<secret signature>: ..., "value": ...}.
    if isinstance(value, dict) and "value" in value and len(value) == 2:
        return value["value"]
    return value


def run_preview_checks(
    config: Mapping[str, Any],
    *,
    stack: str = "preview-checks",
    secret_keys: Collection[str] = ("glidepath:ssh", "glidepath:robot"),
) -> list[Declared]:
    """`config`: the stack's `glidepath:*` values, decrypted (or placeholders for secrets);
    `secret_keys`: those the stack file holds as secrets. A config that puts VMs away
    from their upstream makes the program read where the prefix is routed now
    (components/routed.py), which needs the hosts: keep such configs out of here.

    Raises ConfigError where `parse_config` would fail the preview; every Declared of a
    dynamic resource carries its `check` failures (an empty list when it passes).
    """
    recorder = _Recorder()
    settings.reset_options(project=PROJECT, stack=stack, preview=True)
    pulumi.runtime.set_mocks(recorder, project=PROJECT, stack=stack, preview=True)
    # As the engine hands config to a program: strings (JSON for objects), secrets named.
    program_config = {
        key: value if isinstance(value, str) else json.dumps(value) for key, value in config.items()
    }
    pulumi.runtime.set_all_config(program_config, [key for key in config if key in secret_keys])
    try:
        runpy.run_path(str(PROJECT_ROOT / "__main__.py"), run_name="__main__")
        _sync_await(wait_for_rpcs())
    finally:
        pulumi.runtime.set_all_config({})
        settings.reset_options()
    # The provider process receives the same strings, secrets decrypted.
    raw_config = program_config
    for declared in recorder.declared:
        serialized = _unsecret(declared.inputs.pop("__provider", None))
        if serialized is None:
            continue
        provider = dill.loads(base64.b64decode(serialized))  # noqa: S301 (our own pickle)
        provider.configure(ConfigureRequest(ProviderConfig(raw_config, PROJECT)))
        result = provider.check({}, declared.inputs)
        declared.provider = provider
        declared.checked = dict(result.inputs or {})
        declared.failures = [(f.property, f.reason) for f in result.failures or []]
    return recorder.declared
