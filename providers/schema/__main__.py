"""Write the stack config's JSON schema for editors: `python -m providers.schema`
(`--check`: exit 1 if the committed file is not what the models generate)."""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from providers.schema import DOCSTRINGS

PATH = Path(__file__).resolve().parents[2] / "schema" / "glidepath-stack.schema.json"


def render() -> str:
    return json.dumps(_document_schema(), indent=2) + "\n"


def _document_schema() -> dict[str, Any]:
    stack = importlib.import_module("providers.schema.stack")
    if not stack.Model.model_config.get("use_attribute_docstrings"):
        raise RuntimeError(
            f"the models were imported without their descriptions: run python -m "
            f"providers.schema (it sets {DOCSTRINGS}=1 first), not render() in a process "
            f"that imported them already"
        )
    return stack.document_schema()  # type: ignore[no-any-return,unused-ignore]


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if PATH.read_text() != text:
            print(f"{PATH} is stale: run python -m providers.schema", file=sys.stderr)
            return 1
        return 0
    PATH.parent.mkdir(exist_ok=True)
    PATH.write_text(text)
    print(f"wrote {PATH}")
    return 0


if __name__ == "__main__":
    # Before any model is imported (this module imports none): the descriptions are the
    # attribute docstrings.
    os.environ[DOCSTRINGS] = "1"
    sys.exit(main(sys.argv[1:]))
