"""Pydantic's errors in glidepath's words: each names its place in the input as a user
writes it (`vms.blog.disks[1].path`, `networks.net0.cutover.kind`), with a short reason.

Pydantic's own locations also hold what is no place in the input (a union's tag, `[key]`
for a mapping's key); walking the model's types along a location tells them apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import NoneType, UnionType
from typing import Annotated, Any, Union, get_args, get_origin, get_type_hints

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from typing_extensions import is_typeddict

Problem = tuple[str, str]
"""(path, reason): `("vms.blog.memory_mib", "must be an integer from 96 to 4194304, ...")`."""


def problems(
    model: type[BaseModel], error: ValidationError | Sequence[ErrorDetails]
) -> list[Problem]:
    """Every error of validating `model` (or those of its errors given), in order; a
    model's unknown fields in one line."""
    found: list[Problem] = []
    unknown: dict[str, tuple[int, list[str], Any]] = {}  # path -> (line, fields, model)
    for item in error.errors() if isinstance(error, ValidationError) else error:
        loc, kind, context = item["loc"], item["type"], item.get("ctx") or {}
        if kind == "extra_forbidden":
            path, parent = _walk(model, loc[:-1])
            line, fields, _ = unknown.setdefault(path, (len(found), [], parent))
            fields.append(str(loc[-1]))
            if line == len(found):
                found.append((path, ""))
            continue
        path, _ = _walk(model, loc)
        if kind == "glidepath":
            found += [(_join(path, field), reason) for field, reason in context["found"]]
        elif kind.startswith("union_tag_"):
            found.append((_join(path, context["discriminator"].strip("'")), _reason(item)))
        else:
            found.append((path, _reason(item)))
    for path, (line, fields, parent) in unknown.items():
        names = sorted(_fields_of(parent))
        found[line] = (path, f"unknown fields {sorted(fields)} (known: {', '.join(names)})")
    return found


def _reason(item: Any) -> str:
    kind, context = item["type"], item.get("ctx") or {}
    if kind == "value_error":
        return str(context["error"])  # a validator's Invalid: its own words
    if kind == "missing" or kind == "union_tag_not_found":
        return "is missing"
    if kind == "union_tag_invalid":
        return f"{context['tag']!r} is not one of {context['expected_tags']}"
    if kind == "literal_error":
        return f"{item['input']!r} is not {context['expected']}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "must be a mapping"
    if kind in ("list_type", "tuple_type"):
        return "must be a list"
    if kind == "string_type":
        return "must be text"
    return str(item["msg"])


def _join(path: str, field: str) -> str:
    if not field:
        return path
    return f"{path}{field}" if field.startswith("[") or not path else f"{path}.{field}"


def _walk(model: type[BaseModel], loc: tuple[int | str, ...]) -> tuple[str, Any]:
    """The path of `loc` in the input, and the type found there."""
    path, kind = "", model
    for part in loc:
        kind, place = _step(kind, part)
        path = _join(path, place)
    return path, kind


def _step(kind: Any, part: int | str) -> tuple[Any, str]:
    """The type below `kind` at `part`, and `part` as a place in the input ("" for none)."""
    kind = _bare(kind)
    origin, args = get_origin(kind), get_args(kind)
    if part == "[key]":  # the key itself is wrong: its place is the entry's
        return None, ""
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        field = kind.model_fields.get(str(part))
        return (field.annotation if field else None), str(part)
    if is_typeddict(kind):
        return get_type_hints(kind, include_extras=True).get(str(part)), str(part)
    if origin is dict:
        return args[1], str(part)
    if origin in (list, tuple):
        return args[0], f"[{part}]"
    if origin in (Union, UnionType):
        # A tagged union names the member it chose by its tag; a plain one by its type.
        return next((m for m in args if _tag(m) == part), None), ""
    return None, str(part)


def _bare(kind: Any) -> Any:
    """`kind` without Annotated's metadata, and without None where it is optional."""
    while True:
        if get_origin(kind) is Annotated:
            kind = get_args(kind)[0]
        elif get_origin(kind) in (Union, UnionType) and NoneType in get_args(kind):
            members = [m for m in get_args(kind) if m is not NoneType]
            kind = members[0] if len(members) == 1 else Union[tuple(members)]  # noqa: UP007
        else:
            return kind


def _tag(member: Any) -> Any:
    member = _bare(member)
    if isinstance(member, type) and issubclass(member, BaseModel) and "kind" in member.model_fields:
        return get_args(member.model_fields["kind"].annotation)[0]
    return None


def _fields_of(kind: Any) -> list[str]:
    kind = _bare(kind)
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        return list(kind.model_fields)
    return list(get_type_hints(kind)) if is_typeddict(kind) else []
