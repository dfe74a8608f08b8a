"""Sysctl's inputs: one kernel parameter on one host."""

from __future__ import annotations

from typing import Annotated

from providers import validate
from providers.schema.fields import ResourceArgs, checked
from providers.schema.host import Endpoint


class SysctlArgs(ResourceArgs):
    host: Endpoint
    key: Annotated[str, checked(validate.sysctl_key)]
    value: Annotated[str, checked(validate.sysctl_value)]
