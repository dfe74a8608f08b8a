"""The stack config's JSON schema: up to date with the models, named by the stack files,
and it takes them (the hetzner example's `secure:` entries too) and refuses mistakes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import pytest
import yaml

from engine import PROJECT_ROOT, engine_env
from providers.schema import __main__ as published
from providers.schema.fields import Model

pytestmark = [pytest.mark.unit]


def test_the_published_schema_is_what_the_models_generate() -> None:
    # Regenerate with `python -m providers.schema` after changing a model. It runs in a
    # process of its own: only there do the models carry their descriptions.
    result = subprocess.run(
        [sys.executable, "-m", "providers.schema", "--check"],
        cwd=PROJECT_ROOT,
        env=engine_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_a_process_whose_models_lack_descriptions_refuses_to_render_the_schema() -> None:
    # Everywhere else the models skip their docstrings (the program and the providers
    # start faster); a schema rendered from them would lose every description.
    assert Model.model_config.get("use_attribute_docstrings") is False
    with pytest.raises(RuntimeError, match="without their descriptions"):
        published.render()


STACKS = ["Pulumi.lab.yaml", "Pulumi.hetzner-example.yaml"]


@pytest.mark.parametrize("name", STACKS)
def test_the_stack_files_name_the_schema_and_pass_it(name: str) -> None:
    path = PROJECT_ROOT / "stacks" / name
    first = path.read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=../schema/glidepath-stack.schema.json"
    assert (path.parent / first.split("=", 1)[1]).resolve() == published.PATH
    config = yaml.safe_load(path.read_text())["config"]
    schema = json.loads(published.PATH.read_text())
    assert _refusals(schema, config) == []  # the hetzner example's `secure:` values too


@pytest.mark.parametrize(
    ("edit", "where"),
    [
        (("glidepath:vm", {}), "$"),
        (
            ("glidepath:hosts", {"old": {"address": "198.18.1.2", "port": 0}}),
            "$.glidepath:hosts.old.port",
        ),
        (("glidepath:ssh", {"private_key": {"secure": 1}}), "$.glidepath:ssh.private_key"),
        (("glidepath:robot", {"user": {"secure": "v1:x", "x": 1}}), "$.glidepath:robot.user"),
    ],
)
def test_the_schema_refuses_what_the_config_refuses(edit: tuple[str, Any], where: str) -> None:
    config = yaml.safe_load((PROJECT_ROOT / "stacks" / STACKS[0]).read_text())["config"]
    key, value = edit
    config[key] = value
    refusals = _refusals(json.loads(published.PATH.read_text()), config)
    assert refusals and all(place.startswith(where) for place in refusals), refusals


def _refusals(schema: dict[str, Any], value: Any, node: Any = None, where: str = "$") -> list[str]:
    """Where `value` breaks `schema`, for the keywords pydantic's schemas use (enough for
    these tests; not a general JSON schema validator)."""
    node = schema if node is None else node
    if "$ref" in node:
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
    if "not" in node:
        return [] if _refusals(schema, value, node["not"], where) else [where]
    if "anyOf" in node or "oneOf" in node:
        options = node.get("anyOf") or node["oneOf"]
        refused = [_refusals(schema, value, option, where) for option in options]
        # None fits: say where the closest one does not (the deepest place).
        return max(refused, key=lambda r: max(map(len, r))) if all(refused) else []
    types = {"object": dict, "array": list, "string": str, "integer": int, "boolean": bool}
    kind = node.get("type")
    if kind and not isinstance(value, types.get(kind, type(None))):
        return [where]
    if "const" in node and value != node["const"]:
        return [where]
    if "enum" in node and value not in node["enum"]:
        return [where]
    if isinstance(value, int) and not node.get("minimum", value) <= value <= node.get(
        "maximum", value
    ):
        return [where]
    if isinstance(value, str) and not re.search(node.get("pattern", ""), value):
        return [where]
    found: list[str] = []
    if isinstance(value, dict):
        properties = node.get("properties", {})
        found += [where for key in node.get("required", []) if key not in value]
        for key, item in value.items():
            names = node.get("propertyNames")
            if names and _refusals(schema, key, names):
                found.append(where)
            elif key in properties:
                found += _refusals(schema, item, properties[key], f"{where}.{key}")
            elif node.get("additionalProperties") is False:
                found.append(where)
            elif isinstance(node.get("additionalProperties"), dict):
                found += _refusals(schema, item, node["additionalProperties"], f"{where}.{key}")
    if isinstance(value, list):
        prefix = node.get("prefixItems", [])
        for index, item in enumerate(value):
            item_node = prefix[index] if index < len(prefix) else node.get("items", {})
            found += _refusals(schema, item, item_node, f"{where}[{index}]")
    return found
