"""PolicyRule's inputs: `ip rule add priority P fwmark M table T` on one host."""

from __future__ import annotations

from typing import Annotated

from providers.schema.fields import Between, Mark, ResourceArgs
from providers.schema.host import Endpoint
from providers.schema.routing_table import TableRef

#: 0 is the `local` lookup and 32766/32767 the main/default ones: never ours.
Priority = Annotated[int, Between(1, 32765)]


class PolicyRuleArgs(ResourceArgs):
    host: Endpoint
    priority: Priority
    fwmark: Mark
    table: TableRef
