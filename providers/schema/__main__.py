"""Write the stack config's JSON schema for editors: `python -m providers.schema`
(`--check`: exit 1 if the committed file is not what the models generate)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from providers.schema.stack import document_schema

PATH = Path(__file__).resolve().parents[2] / "schema" / "glidepath-stack.schema.json"


def render() -> str:
    return json.dumps(document_schema(), indent=2) + "\n"


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
    sys.exit(main(sys.argv[1:]))
