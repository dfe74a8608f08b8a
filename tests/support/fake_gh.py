"""A fake `gh` for the pipeline tests: GitHub itself (its API and the artifacts of the
hosted runner) is the one edge these tests cannot reach, so it is stubbed here and
nothing else is. State lives in FAKE_GH_DIR:

    comments.jsonl            each `gh pr comment N --body-file F`: {"pr": N, "body": ...}
    merges.json               {"<commit on main>": [pr number, "<pr head sha>"]}
    runs.json                 {"<pr head sha>": <run id of its successful preview>}
    artifacts/<run>/<name>/   what that run uploaded as artifact <name>

Answers are what `gh ... --jq <the scripts' filter>` prints for these records.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

__all__ = ["comments", "install", "merged", "upload_artifact"]

SCRIPT = """\
#!{python}
import json, os, shutil, sys
from pathlib import Path

state = Path(os.environ["FAKE_GH_DIR"])
args = sys.argv[1:]


def value(flag):
    return args[args.index(flag) + 1] if flag in args else None


def load(name):
    path = state / name
    return json.loads(path.read_text()) if path.exists() else {{}}


with (state / "calls.jsonl").open("a") as log:
    log.write(json.dumps(args) + "\\n")
if args[:2] == ["pr", "comment"]:
    body = Path(value("--body-file")).read_text()
    with (state / "comments.jsonl").open("a") as out:
        out.write(json.dumps({{"pr": args[2], "body": body}}) + "\\n")
elif args[0] == "api" and args[1].endswith("/pulls"):
    sha = args[1].split("/")[-2]
    number, head = load("merges.json").get(sha, [None, None])
    print("null null" if number is None else f"{{number}} {{head}}")
elif args[:2] == ["run", "list"]:
    print(load("runs.json").get(value("--commit"), "null"))
elif args[:2] == ["run", "download"]:
    source = state / "artifacts" / args[2] / value("--name")
    if not source.is_dir():
        sys.exit(f"no artifact {{value('--name')}} in run {{args[2]}}")
    shutil.copytree(source, value("--dir"), dirs_exist_ok=True)
else:
    sys.exit(f"fake gh: not handled: {{args}}")
"""


def install(bin_dir: Path, state: Path) -> dict[str, str]:
    """Write `gh` into bin_dir; returns the environment it needs."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    state.mkdir(parents=True, exist_ok=True)
    gh = bin_dir / "gh"
    gh.write_text(SCRIPT.format(python=sys.executable))
    gh.chmod(0o755)
    return {"FAKE_GH_DIR": str(state)}


def upload_artifact(state: Path, run_id: str, name: str, path: Path) -> None:
    """What actions/upload-artifact does on the hosted runner, for the fake's store."""
    target = state / "artifacts" / run_id / name
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, target / path.name)


def merged(state: Path, main_sha: str, number: int, head: str, run_id: str) -> None:
    """GitHub's record that pull request `number` (head `head`, previewed in run `run_id`)
    was merged as `main_sha`."""
    for name, key, entry in (
        ("merges.json", main_sha, [number, head]),
        ("runs.json", head, run_id),
    ):
        path = state / name
        records = json.loads(path.read_text()) if path.exists() else {}
        records[key] = entry
        path.write_text(json.dumps(records))


def comments(state: Path) -> list[dict[str, str]]:
    path = state / "comments.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]
