"""What every input model is built from: the validators of `providers/validate.py` as
annotated types, so the stack config and each provider's `check` accept and refuse the
same values with the same messages, and the JSON schema says what they are.

A validator runs before pydantic's own type check (`BeforeValidator`): it sees the value
as given, exactly as `check` did (numbers arrive from the engine as floats, 3.0 is 3).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, GetCoreSchemaHandler, model_validator
from pydantic.fields import FieldInfo
from pydantic.json_schema import GetJsonSchemaHandler, JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

from providers import validate
from providers.schema import DOCSTRINGS
from providers.validate import Invalid


class Model(BaseModel):
    """An input: unknown fields are refused (a misspelt optional field would silently fall
    back to its default), and a null mapping or list is an empty one (`boot:` with nothing
    under it in YAML)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, use_attribute_docstrings=os.environ.get(DOCSTRINGS) == "1"
    )

    @model_validator(mode="before")
    @classmethod
    def _nulls(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        return {
            key: _empty(cls.model_fields[key])
            if value is None and key in cls.model_fields
            else value
            for key, value in data.items()
        }


def _empty(field: FieldInfo) -> Any:
    """What null stands for in a field: an empty mapping or list where the field is one."""
    default = field.get_default(call_default_factory=True, validated_data={})
    if isinstance(default, list):
        return []
    return {} if isinstance(default, dict | BaseModel) else None


class ResourceArgs(Model):
    """A resource's inputs as its provider's `check` receives them: the outputs the
    resource declares next to them (`adopted`, `actual`, ...) pass through untouched, and
    an optional input the program leaves unset arrives as null: its default."""

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="before")
    @classmethod
    def _nulls(cls, data: Any) -> Any:  # in place of Model's
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        return {
            key: value
            for key, value in data.items()
            if value is not None or key not in fields or fields[key].is_required()
        }


@dataclass(frozen=True)
class Between:
    """An integer from `low` to `high` (`validate.integer`, or `check` where it words its
    error itself), with its bounds in the JSON schema."""

    low: int
    high: int
    check: Callable[[Any], int] | None = None

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        check = self.check or partial(validate.integer, low=self.low, high=self.high)
        return core_schema.no_info_before_validator_function(check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {**handler(schema), "minimum": self.low, "maximum": self.high}


def at(*found: tuple[str, str]) -> PydanticCustomError:
    """A model's own check failed: each (field, reason) names a place below the model
    ("" for the model itself, "known_hosts", "[1].path"), as a field's error would."""
    summary = "; ".join(f"{field}: {reason}" if field else reason for field, reason in found)
    return PydanticCustomError("glidepath", "{summary}", {"found": list(found), "summary": summary})


def checked(check: Callable[..., Any], **options: Any) -> BeforeValidator:
    """`check(value, **options)` before pydantic's own type check."""
    return BeforeValidator(partial(check, **options))


HostName = Annotated[str, checked(validate.name, what="host name")]
NetworkName = Annotated[str, checked(validate.name, what="network name")]
VmName = Annotated[str, checked(validate.name, what="VM name")]
Address = Annotated[str, checked(validate.address)]
Ipv4Prefix = Annotated[str, checked(validate.ipv4_prefix)]
InterfaceName = Annotated[str, checked(validate.interface_name)]
AbsolutePath = Annotated[str, checked(validate.absolute_path)]
TunnelAddress = Annotated[str, checked(validate.tunnel_address)]
Boolean = Annotated[bool, checked(validate.boolean)]
#: A netfilter mark, as `ip rule fwmark` and iptables `--set-mark` take it.
Mark = Annotated[int, Between(1, 0xFFFFFFFF)]
Ipv4Address = Annotated[str, checked(validate.ipv4_address)]
#: The stack that holds a host artifact several stacks share (providers/owners.py).
Owner = Annotated[str, checked(validate.owner_name)]
#: Owner of a resource declared without one (a direct provider test).
DEFAULT_OWNER = "glidepath"


class Secure(Model):
    """A secret as a stack file holds it, encrypted (`pulumi config set --secret`): what a
    stack read as YAML, without the engine, has in place of the value."""

    secure: str


def secret_or_text(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"secure"} and isinstance(value["secure"], str):
        return Secure(secure=value["secure"])
    if value is None or isinstance(value, str):
        return value
    # Never echo it: it may be the secret itself, given in the wrong shape.
    raise Invalid("must be text, or a secret (secure: v1:...)")


#: Text that is a secret in a real stack, or its `secure:` entry where read undecrypted.
SecretText = Annotated[str | Secure, BeforeValidator(secret_or_text)]
