"""The GitOps pipeline's logic (scripts/ci/), run here the way the workflow runs it.

A fake `pulumi` and a fake `gh` on PATH record what they were asked and how (argv, what
came on stdin); the real CLI's preview is in tests/engine/test_ci_preview.py. Every script
runs with stdin closed, as on a runner, and a short timeout: a prompt would hang, not pass.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from engine import PROJECT_ROOT
from tests.support import fake_gh

pytestmark = [pytest.mark.unit]

CI = PROJECT_ROOT / "scripts" / "ci"
SSH_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "QyNTUxOQAAACBfakefakefakefakefakefakefakefakefakefakefakeAAAAJBfakefake\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)
SECRETS = {
    "PULUMI_CONFIG_PASSPHRASE": "correct-horse-battery-staple",
    "GLIDEPATH_SSH_PRIVATE_KEY": SSH_KEY,
    "GLIDEPATH_ROBOT_USER": "#ws+Xy12Ab34",
    "GLIDEPATH_ROBOT_PASSWORD": "s3cr3t-r0b0t-pw",
    "AWS_SECRET_ACCESS_KEY": "bucket-s3cr3t-k3y-0123",
}
PREVIEW_STDOUT = """\
Previewing update (ci):
  pulumi:pulumi:Stack: (same)
    [urn=urn:pulumi:ci::glidepath::pulumi:pulumi:Stack::glidepath-ci]
    ~ pulumi-python:dynamic/vm:VmPlacement: (update)
        [urn=urn:pulumi:ci::glidepath::glidepath:components:VirtualMachine$pulumi-python:dynamic/vm:VmPlacement::blog]
      ~ host: {
          ~ address: "198.51.100.10" => "198.51.100.20"
          ~ name   : "old" => "new"
        }
Resources:
    ~ 2 to update
    + 4 to create
    36 unchanged

"""
PREVIEW_STDERR = """\
blog: live-migrate old -> new: copy 20480 MiB disk + 2048 MiB RAM, max downtime 100 ms
blog: pre-flight ok on new (libvirt 9.0.0, QEMU 7.2.22, 30000 MiB free)
net0: cutover 203.0.113.0/29 old -> new (hetzner-robot), then drop new's egress mark at the \
first direct packet
"""

FAKE_PULUMI = """\
#!{python}
# Records argv, whether stdin was a terminal and what came on it; answers like pulumi.
import json, os, sys
args = sys.argv[1:]
record = {{"argv": args, "tty": os.isatty(0), "stdin": sys.stdin.read()}}
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(record) + "\\n")
if "--save-plan" in args:
    with open(args[args.index("--save-plan") + 1], "w") as plan:
        plan.write('{{"resourcePlans": {{}}}}')
if "preview" in args:
    sys.stdout.write({stdout!r})
    sys.stderr.write({stderr!r})
    # A provider that echoes a secret it was given: the scripts must hide it.
    sys.stderr.write("leak: " + os.environ.get("PULUMI_CONFIG_PASSPHRASE", "") + "\\n")
    sys.exit(int(os.environ.get("FAKE_STATUS", "0")))
if "up" in args:
    print("blog: moved old -> new in 41.2 s, downtime 63 ms (QEMU), 22528 MiB copied")
    print("leak: " + os.environ.get("GLIDEPATH_ROBOT_PASSWORD", ""))
    print("leak: " + os.environ.get("AWS_SECRET_ACCESS_KEY", ""))
"""

FAKE_GH = """\
#!{python}
import json, os, sys
args = sys.argv[1:]
body = open(args[args.index("--body-file") + 1]).read() if "--body-file" in args else None
with open(os.environ["FAKE_GH_LOG"], "a") as log:
    log.write(json.dumps({{"argv": args, "body": body}}) + "\\n")
"""


def _project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    (project / "stacks").mkdir(parents=True)
    (project / "Pulumi.yaml").write_text(
        "name: glidepath\nruntime: python\nstackConfigDir: stacks\n"
    )
    (project / "stacks" / "Pulumi.ci.yaml").write_text("config: {}\nencryptionsalt: v1:x:v1:y:z\n")
    return project


def _fakes(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("pulumi", FAKE_PULUMI), ("gh", FAKE_GH)):
        path = bin_dir / name
        path.write_text(
            text.format(python=sys.executable, stdout=PREVIEW_STDOUT, stderr=PREVIEW_STDERR)
        )
        path.chmod(0o755)
    return bin_dir


def _run(script: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    project = tmp_path / "project"
    if not project.exists():
        _project(tmp_path)
    bin_dir = tmp_path / "bin"
    if not bin_dir.exists():
        _fakes(tmp_path)
    base = {
        "PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PYTHON": sys.executable,
        "FAKE_LOG": str(tmp_path / "pulumi.log"),
        "FAKE_GH_LOG": str(tmp_path / "gh.log"),
        "GLIDEPATH_STACK": "ci",
        "GLIDEPATH_WORK_DIR": str(project),
        "PULUMI_BACKEND_URL": f"file://{tmp_path / 'backend'}",
        **SECRETS,
    }
    return subprocess.run(
        ["bash", str(CI / script)],
        env={**base, **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _calls(tmp_path: Path, log: str = "pulumi.log") -> list[dict[str, Any]]:
    path = tmp_path / log
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def _no_secret_in(text: str) -> None:
    for name, value in SECRETS.items():
        for part in [value, *value.splitlines()]:
            if len(part.strip()) >= 8:
                assert part.strip() not in text, f"{name} leaked"


def test_preview_posts_the_diff_as_a_comment(tmp_path: Path) -> None:
    result = _run("preview.sh", tmp_path, GLIDEPATH_PR_NUMBER="42", GITHUB_SHA="0123456789abcdef0")
    assert result.returncode == 0, result.stderr
    (comment,) = _calls(tmp_path, "gh.log")
    assert comment["argv"][:3] == ["pr", "comment", "42"]
    body = comment["body"]
    assert "### glidepath preview of `ci`: ok" in body
    assert "commit 0123456789ab" in body
    assert "- blog: live-migrate old -> new: copy 20480 MiB disk" in body
    assert "- blog: pre-flight ok on new" in body
    assert "- net0: cutover 203.0.113.0/29 old -> new (hetzner-robot)" in body
    assert "Changes: ~ 2 to update, + 4 to create, 36 unchanged" in body
    assert '~ address: "198.51.100.10" => "198.51.100.20"' in body  # the diff itself
    assert "leak: ***" in body
    _no_secret_in(body + result.stdout + result.stderr)


def test_preview_runs_pulumi_without_a_terminal_and_sets_secrets_through_stdin(
    tmp_path: Path,
) -> None:
    assert _run("preview.sh", tmp_path).returncode == 0
    calls = _calls(tmp_path)
    assert all(call["argv"][0] == "--non-interactive" for call in calls)
    assert not any(call["tty"] for call in calls)
    (preview,) = [call for call in calls if "preview" in call["argv"]]
    assert {"--diff", "--stack", "ci"} <= set(preview["argv"])
    assert preview["stdin"] == ""  # closed: nothing could answer a prompt
    secrets_set = {
        call["argv"][call["argv"].index("--path") + 1]: call["stdin"]
        for call in calls
        if call["argv"][1:3] == ["config", "set"]
    }
    # The Robot credentials are never written into the stack: its config is part of the
    # update plan, and the providers read them from the approved job's environment.
    assert secrets_set == {"glidepath:ssh.private_key": SSH_KEY}
    for call in calls:
        assert "--secret" in call["argv"] or call["argv"][1:3] != ["config", "set"]
        _no_secret_in(" ".join(call["argv"]))


def test_a_failed_preview_is_posted_and_fails_the_check(tmp_path: Path) -> None:
    result = _run("preview.sh", tmp_path, GLIDEPATH_PR_NUMBER="7", FAKE_STATUS="255")
    assert result.returncode == 255
    (comment,) = _calls(tmp_path, "gh.log")
    assert "**failed** (exit 255)" in comment["body"]


def test_without_a_pull_request_the_comment_is_printed(tmp_path: Path) -> None:
    result = _run("preview.sh", tmp_path)
    assert result.returncode == 0
    assert _calls(tmp_path, "gh.log") == []
    assert "- blog: live-migrate old -> new" in result.stdout


def test_missing_passphrase_fails_at_once_instead_of_prompting(tmp_path: Path) -> None:
    result = _run("preview.sh", tmp_path, PULUMI_CONFIG_PASSPHRASE="")
    assert result.returncode == 2
    assert "set PULUMI_CONFIG_PASSPHRASE" in result.stderr
    assert _calls(tmp_path) == []


def test_a_missing_stack_is_not_created_unless_asked(tmp_path: Path) -> None:
    bin_dir = _fakes(tmp_path)
    # `stack select` fails: the stack is not in the backend.
    (bin_dir / "pulumi").write_text(
        (bin_dir / "pulumi")
        .read_text()
        .replace("args = sys.argv[1:]\n", "args = sys.argv[1:]\nif 'select' in args: sys.exit(1)\n")
    )
    result = _run("preview.sh", tmp_path)
    assert result.returncode == 2
    assert "GLIDEPATH_INIT_STACK=yes creates it" in result.stderr
    assert not any("init" in call["argv"] for call in _calls(tmp_path))


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        (
            {"GITHUB_REF": "refs/heads/feature", "GLIDEPATH_DEPLOY_ENVIRONMENT": "production"},
            "main only",
        ),
        ({"GLIDEPATH_DEPLOY_ENVIRONMENT": "production"}, "main only"),
        ({"GITHUB_REF": "refs/heads/main"}, "only in the approved job"),
        (
            {"GITHUB_REF": "refs/heads/main", "GLIDEPATH_DEPLOY_ENVIRONMENT": "staging"},
            "approved job",
        ),
        (
            {
                "GITHUB_REF": "refs/heads/main",
                "GITHUB_EVENT_NAME": "pull_request_target",
                "GLIDEPATH_DEPLOY_ENVIRONMENT": "production",
            },
            "not from a pull request",
        ),
    ],
)
def test_up_refuses_outside_main_or_without_approval(
    tmp_path: Path, env: dict[str, str], reason: str
) -> None:
    result = _run("up.sh", tmp_path, **env)
    assert result.returncode == 2
    assert "refusing pulumi up" in result.stderr and reason in result.stderr
    assert _calls(tmp_path) == []  # pulumi was never called


APPROVED = {
    "GITHUB_REF": "refs/heads/main",
    "GITHUB_EVENT_NAME": "push",
    "GLIDEPATH_DEPLOY_ENVIRONMENT": "production",
}


def test_preview_saves_the_plan_and_names_it_in_the_comment(tmp_path: Path) -> None:
    plan = tmp_path / "plan" / "glidepath-plan.json"
    plan.parent.mkdir()
    plan.write_text("an older plan")
    result = _run("preview.sh", tmp_path, GLIDEPATH_PR_NUMBER="42", GLIDEPATH_PLAN_FILE=str(plan))
    assert result.returncode == 0, result.stderr
    (preview,) = [call for call in _calls(tmp_path) if "preview" in call["argv"]]
    assert preview["argv"][preview["argv"].index("--save-plan") + 1] == str(plan)
    digest = hashlib.sha256(plan.read_bytes()).hexdigest()
    (comment,) = _calls(tmp_path, "gh.log")
    assert f"Saved as the update plan `{digest}`" in comment["body"]


def test_a_failed_preview_leaves_no_plan(tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text("an older plan")
    result = _run("preview.sh", tmp_path, GLIDEPATH_PLAN_FILE=str(plan), FAKE_STATUS="255")
    assert result.returncode == 255
    assert not plan.exists()


def test_up_without_a_plan_is_refused(tmp_path: Path) -> None:
    for plan in ("", str(tmp_path / "missing.json")):
        result = _run("up.sh", tmp_path, GLIDEPATH_PLAN_FILE=plan, **APPROVED)
        assert result.returncode == 2
        assert "refusing pulumi up: no approved plan" in result.stderr
    assert _calls(tmp_path) == []


def test_up_on_main_after_approval(tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text('{"resourcePlans": {}}')
    result = _run("up.sh", tmp_path, GLIDEPATH_PLAN_FILE=str(plan), **APPROVED)
    assert result.returncode == 0, result.stderr
    (up,) = [call for call in _calls(tmp_path) if "up" in call["argv"]]
    assert up["argv"][:5] == ["--non-interactive", "up", "--yes", "--plan", str(plan)]
    assert "--skip-preview" not in up["argv"]  # the preview is what checks the plan
    assert up["stdin"] == "" and not up["tty"]
    assert "blog: moved old -> new in 41.2 s, downtime 63 ms" in result.stdout
    assert "leak: ***" in result.stdout
    _no_secret_in(result.stdout + result.stderr)


def test_comment_survives_backticks_and_is_bounded(tmp_path: Path) -> None:
    log = tmp_path / "preview.log"
    log.write_text("```\nerror: boom\n" + "x" * 80 + "\n" + ("line\n" * 30_000))
    command = [sys.executable, str(CI / "comment.py"), "body", "--stack", "s", "--status", "1"]
    made = subprocess.run(
        [*command, "--log", str(log)],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    body = made.stdout
    assert len(body) < 65_536  # GitHub's limit for a comment
    assert "- error: boom" in body
    assert "````diff" in body  # a fence longer than the log's own backticks
    assert "lines cut" in body


def test_fetch_plan_takes_the_plan_of_the_merged_pull_request(tmp_path: Path) -> None:
    state = tmp_path / "github"
    gh_env = fake_gh.install(tmp_path / "gh-bin", state)
    saved = tmp_path / "saved" / "glidepath-plan.json"
    saved.parent.mkdir()
    saved.write_text('{"resourcePlans": {"urn": {}}}')
    fake_gh.upload_artifact(state, "901", "glidepath-plan-ci", saved)
    fake_gh.merged(state, "a" * 40, 17, "b" * 40, "901")
    plan = tmp_path / "run" / "plan.json"
    env = {
        **gh_env,
        "PATH": f"{tmp_path / 'gh-bin'}{os.pathsep}/usr/bin:/bin",
        "GLIDEPATH_PLAN_FILE": str(plan),
        "GH_REPO": "example/infra",
    }
    result = _run("fetch-plan.sh", tmp_path, GITHUB_SHA="a" * 40, **env)
    assert result.returncode == 0, result.stderr
    assert plan.read_text() == saved.read_text()
    assert "of pull request #17 (head bbbbbbbbbbbb, run 901)" in result.stdout

    # A push to main that merged no pull request, or one without a successful preview.
    plan.unlink()
    result = _run("fetch-plan.sh", tmp_path, GITHUB_SHA="c" * 40, **env)
    assert result.returncode == 2
    assert "merged no pull request: there is no reviewed plan" in result.stderr
    fake_gh.merged(state, "d" * 40, 18, "e" * 40, "null")
    result = _run("fetch-plan.sh", tmp_path, GITHUB_SHA="d" * 40, **env)
    assert result.returncode == 2
    assert "pull request #18 (head eeeeeeeeeeee) has no successful preview run" in result.stderr
    assert not plan.exists()
