"""Sysctl's inputs: one kernel parameter on one host."""

from __future__ import annotations

from typing import Annotated

from providers import validate
from providers.schema.fields import DEFAULT_OWNER, Owner, ResourceArgs, checked
from providers.schema.host import Endpoint


class SysctlArgs(ResourceArgs):
    host: Endpoint
    key: Annotated[str, checked(validate.sysctl_key)]
    value: Annotated[str, checked(validate.sysctl_value)]
    owner: Owner = DEFAULT_OWNER
    """The stack setting it; the value before glidepath comes back when the last goes."""
