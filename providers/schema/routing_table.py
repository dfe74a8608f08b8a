"""RoutingTable's inputs: an `id name` line of a host's rt_tables, and the tables a rule
or a route may look up."""

from __future__ import annotations

from typing import Annotated

from providers import validate
from providers.schema.fields import Between, ResourceArgs, checked
from providers.schema.host import Endpoint

TableId = Annotated[int, Between(*validate.TABLE_IDS, check=validate.table_id)]
TableName = Annotated[str, checked(validate.table_name)]
#: A table to look up, by id or by name (an rt_tables name, or main/default/local).
TableRef = Annotated[int | str, checked(validate.table)]


class RoutingTableArgs(ResourceArgs):
    host: Endpoint
    table_id: TableId
    name: TableName
