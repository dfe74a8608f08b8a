"""The pull-request comment for a `pulumi preview --diff`, and the scrubber for CI logs.

    comment.py body --stack S --status N --log FILE [--commit SHA] [--run-url URL]
        prints the comment (Markdown): what glidepath will do (the providers' lines: each
        move, its pre-flight, each cutover), errors, the change summary, then the whole
        diff, folded;
    comment.py scrub  < text
        copies stdin to stdout with every secret it knows replaced by ***.

A comment is posted by `gh`, outside GitHub's log masking, so both paths scrub: the
values of the secret environment variables below (each line of a multi-line one too)
never reach a comment or a log. Standard library only: CI runs it before any install.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path

#: Environment variables whose values are secrets wherever they appear.
SECRET_VARIABLES = (
    "PULUMI_CONFIG_PASSPHRASE",
    "PULUMI_ACCESS_TOKEN",
    "GLIDEPATH_SSH_PRIVATE_KEY",
    "GLIDEPATH_ROBOT_USER",
    "GLIDEPATH_ROBOT_PASSWORD",
    "AWS_SECRET_ACCESS_KEY",
    "GH_TOKEN",
    "GITHUB_TOKEN",
)
#: GitHub refuses comment bodies over 65536 characters; leave room for the frame.
MAX_DIFF_CHARS = 60_000
#: What providers print at preview (providers/vm_placement.py, providers/upstream.py).
PLAN_LINE = re.compile(r": (live-migrate |pre-flight |cannot move |cutover )")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
#: Pulumi indents its +/- markers; GitHub colours a diff line by its first character.
INDENTED_MARK = re.compile(r"^(\s+)([-+])(\s)")
MARKER = "<!-- glidepath-preview:{stack} -->"


def secrets(environ: dict[str, str] | None = None) -> list[str]:
    """The secret strings to hide, longest first (a line of a key before the whole)."""
    env = dict(os.environ if environ is None else environ)
    values: set[str] = set()
    passphrase_file = env.get("PULUMI_CONFIG_PASSPHRASE_FILE")
    if passphrase_file:
        with contextlib.suppress(OSError):
            values.add(Path(passphrase_file).read_text().strip())
    for name in SECRET_VARIABLES:
        value = env.get(name, "")
        values.add(value.strip())
        # A key is printed line by line as often as whole.
        values.update(line.strip() for line in value.splitlines() if len(line.strip()) >= 8)
    # Hiding very short values would garble the text without protecting anything.
    return sorted((v for v in values if len(v) >= 4), key=len, reverse=True)


def scrub(text: str, hidden: Iterable[str]) -> str:
    for value in hidden:
        text = text.replace(value, "***")
    return text


def _fence(text: str) -> str:
    """A code fence longer than any backtick run inside the text."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head, tail = text[: limit // 2], text[-limit // 2 :]
    cut = text.count("\n", len(head), len(text) - len(tail))
    return f"{head}\n[... {cut} lines cut: the whole output is in the run's log ...]\n{tail}"


def body(stack: str, status: int, log: str, commit: str = "", run_url: str = "") -> str:
    log = ANSI.sub("", log)
    lines = log.splitlines()
    plan = [line.strip() for line in lines if PLAN_LINE.search(line)]
    errors = [line.strip() for line in lines if re.match(r"\s*error:", line)]
    summary: list[str] = []
    if "Resources:" in lines:
        for line in lines[lines.index("Resources:") + 1 :]:
            if not line.strip():
                break
            summary.append(line.strip())
    verdict = "ok" if status == 0 else f"**failed** (exit {status})"
    where = " · ".join(
        part
        for part in (
            f"commit {commit[:12]}" if commit else "",
            f"[run]({run_url})" if run_url else "",
        )
        if part
    )
    out = [MARKER.format(stack=stack), f"### glidepath preview of `{stack}`: {verdict}"]
    if where:
        out.append(where)
    out.append("")
    if plan:
        out.append("What `pulumi up` will do (the providers' plan and pre-flight):")
        out.append("")
        out += [f"- {line}" for line in plan]
        out.append("")
    if errors:
        out.append("Errors:")
        out.append("")
        out += [f"- {line}" for line in errors]
        out.append("")
    if summary:
        out.append("Changes: " + ", ".join(summary))
        out.append("")
    marked = "\n".join(INDENTED_MARK.sub(r"\2\1\3", line) for line in log.strip().splitlines())
    diff = _shorten(marked, MAX_DIFF_CHARS)
    fence = _fence(diff)
    out += [
        "<details><summary>pulumi preview --diff</summary>",
        "",
        f"{fence}diff",
        diff,
        fence,
        "",
        "</details>",
    ]
    return scrub("\n".join(out) + "\n", secrets())


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("body", help="print the PR comment for a preview log")
    make.add_argument("--stack", required=True)
    make.add_argument("--status", type=int, required=True)
    make.add_argument("--log", type=Path, required=True)
    make.add_argument("--commit", default="")
    make.add_argument("--run-url", default="")
    commands.add_parser("scrub", help="copy stdin to stdout, secrets replaced by ***")
    args = parser.parse_args(argv)
    if args.command == "scrub":
        hidden = secrets()
        for line in sys.stdin:
            sys.stdout.write(scrub(line, hidden))
            sys.stdout.flush()  # a live log: each line as it comes
        return 0
    log = args.log.read_text(errors="replace")
    sys.stdout.write(body(args.stack, args.status, log, args.commit, args.run_url))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
