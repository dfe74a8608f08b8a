"""The GitOps pipeline as a team runs it, end to end on the lab: the steps of
.github/workflows/glidepath.yml in order, through scripts/ci/, with the state in a real S3
server (versitygw, tests/support/s3_server.py), from an empty bucket to a reviewed move.

Only what cannot run here is stubbed, at its edge: the hosted runner's own steps
(checkout, setup-python, installing the CLI: this machine has them) and GitHub (the PR
comment, which pull request a commit merged, the artifact store: tests/support/fake_gh.py).
Everything else is real: the CLI, the engine, the lab's hosts, the S3 backend's lock.

One test, in the order a team lives it (docs/gitops.md, "From an empty bucket"):
the stack created in the empty bucket; pull request 1 puts `blog` on `old` (preview,
plan, merge, `up --plan`); pull request 2 moves it to `new`, and while that deploy runs an
operator's `pulumi up` of the same stack is refused by the backend's lock, naming the
deploy as its holder; pull request 3 would move it back, but main changed after its
preview: the deploy refuses its plan and the hosts keep what they have.
"""

from __future__ import annotations

import getpass
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine import LAB_PASSPHRASE, PROJECT_ROOT, engine_env
from lab import baseline
from lab.stacks import remove_vm_everywhere
from tests.e2e.conftest import host_network
from tests.support import fake_gh
from tests.support.s3_server import S3Bucket

pytestmark = [pytest.mark.e2e, pytest.mark.lab, pytest.mark.engine]

STACK = "e2e-team"
STACK_FILE = PROJECT_ROOT / "stacks" / f"Pulumi.{STACK}.yaml"
WORKFLOW = PROJECT_ROOT / ".github" / "workflows" / "glidepath.yml"
DISK = "/var/lib/libvirt/images/blog.img"
REPO = "example/glidepath-infra"
#: The hosted runner's own steps: this machine is set up by bootstrap instead.
RUNNER_ONLY = {
    "actions/checkout@v4",
    "actions/setup-python@v5",
    "Install the Pulumi CLI and the project's virtualenv",
}
EXPRESSION = re.compile(r"\$\{\{\s*(.+?)\s*\}\}")


class Pipeline:
    """Runs the workflow's jobs step by step, as the runner would, on this machine."""

    def __init__(self, tmp_path: Path, bucket: S3Bucket) -> None:
        self.workflow = yaml.safe_load(WORKFLOW.read_text())
        self.github = tmp_path / "github"  # the fake gh's records
        self.runners = tmp_path  # each job's runner.temp is its own: runner-<run id>
        self.env = engine_env()
        self.env.pop("PULUMI_CONFIG_PASSPHRASE_FILE", None)
        self.env.pop("PULUMI_CONFIG_PASSPHRASE", None)
        self.env.pop("PULUMI_BACKEND_URL", None)
        self.env.update(fake_gh.install(tmp_path / "gh-bin", self.github))
        self.env["PATH"] = f"{tmp_path / 'gh-bin'}:{self.env['PATH']}"
        # The repository's settings: the bucket as a variable, its keys and the stack's
        # passphrase as secrets; secrets not set are empty, as on GitHub.
        self.vars = {"PULUMI_BACKEND_URL": bucket.backend_url}
        self.secrets = {
            "PULUMI_CONFIG_PASSPHRASE": LAB_PASSPHRASE,
            "AWS_ACCESS_KEY_ID": bucket.server.access_key,
            "AWS_SECRET_ACCESS_KEY": bucket.server.secret_key,
        }

    def runner_temp(self, event: dict[str, str]) -> Path:
        folder = self.runners / f"runner-{event['run_id']}"
        folder.mkdir(exist_ok=True)
        return folder

    def _context(self, event: dict[str, str]) -> dict[str, str]:
        context = {
            "matrix.stack": STACK,
            "runner.temp": str(self.runner_temp(event)),
            "github.server_url": "https://github.com",
            "github.repository": REPO,
            "github.run_id": event["run_id"],
            "github.sha": event["sha"],
            "github.token": "ghs_fake-token-for-the-fake-gh",
        }
        if "pr" in event:
            context["github.event.pull_request.number"] = event["pr"]
            context["github.event.pull_request.head.sha"] = event["sha"]
        context.update({f"vars.{k}": v for k, v in self.vars.items()})
        return context

    def _expand(self, text: str, context: dict[str, str]) -> str:
        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("secrets."):
                return self.secrets.get(name.removeprefix("secrets."), "")
            assert name in context, f"the workflow uses ${{{{ {name} }}}}: give it a value here"
            return context[name]

        return EXPRESSION.sub(value, text)

    def steps(self, job: str, event: dict[str, str]) -> Iterator[tuple[str, Any]]:
        """(name, what) per step: ("run", (argv, env)) or ("upload", (name, path))."""
        context = self._context(event)
        spec = self.workflow["jobs"][job]
        base = {k: self._expand(str(v), context) for k, v in self.workflow["env"].items()}
        summary = self.runner_temp(event) / "step-summary.md"
        github_env = {
            "GITHUB_REF": event["ref"],
            "GITHUB_EVENT_NAME": event["event"],
            "GITHUB_SHA": event["sha"],
            "GITHUB_STEP_SUMMARY": str(summary),
        }
        skipped = set()
        for step in spec["steps"]:
            label = step.get("name") or step.get("uses")
            if label in RUNNER_ONLY:
                skipped.add(label)
                continue
            if step.get("uses", "").startswith("actions/upload-artifact@"):
                with_ = {k: self._expand(str(v), context) for k, v in step["with"].items()}
                yield label, ("upload", (with_["name"], Path(with_["path"])))
                continue
            assert "run" in step, f"step {label!r} of job {job}: neither run nor stubbed"
            env = {
                **self.env,
                **github_env,
                **base,
                **{k: self._expand(str(v), context) for k, v in step.get("env", {}).items()},
            }
            argv = ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]]
            yield label, ("run", (argv, env))
        assert skipped == RUNNER_ONLY, f"job {job}: runner-only steps changed: {skipped}"

    def run_job(
        self, job: str, event: dict[str, str]
    ) -> dict[str, subprocess.CompletedProcess[str]]:
        """Every step in order; stops at the first that fails, as the runner does."""
        done: dict[str, subprocess.CompletedProcess[str]] = {}
        for label, (kind, what) in self.steps(job, event):
            if kind == "upload":
                name, path = what
                assert path.is_file(), f"step {label!r}: nothing to upload at {path}"
                fake_gh.upload_artifact(self.github, event["run_id"], name, path)
                continue
            argv, env = what
            result = subprocess.run(
                argv,
                cwd=PROJECT_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            print(f"--- {job}: {label} (exit {result.returncode})\n{result.stdout}{result.stderr}")
            done[label] = result
            if result.returncode != 0:
                break
        return done

    def pull_request(self, number: int, head: str) -> dict[str, subprocess.CompletedProcess[str]]:
        return self.run_job(
            "preview",
            {
                "event": "pull_request",
                "ref": f"refs/pull/{number}/merge",
                "sha": head,
                "pr": str(number),
                "run_id": str(1000 + number),
            },
        )

    def merge(self, number: int, head: str) -> dict[str, str]:
        """GitHub merges the pull request: the push event to main that follows."""
        main_sha = f"{number:02d}" + "m" * 38
        fake_gh.merged(self.github, main_sha, number, head, str(1000 + number))
        return {
            "event": "push",
            "ref": "refs/heads/main",
            "sha": main_sha,
            "run_id": f"2{number:03d}",
        }


def _cli(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["pulumi", "--non-interactive", "--color", "never", *args, "--stack", STACK],
        cwd=PROJECT_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _set_host(host: str) -> None:
    raw = yaml.safe_load(STACK_FILE.read_text())
    raw["config"]["glidepath:vms"]["blog"]["host"] = host
    STACK_FILE.write_text(yaml.safe_dump(raw, sort_keys=False))


def _last(results: dict[str, subprocess.CompletedProcess[str]]) -> subprocess.CompletedProcess[str]:
    return list(results.values())[-1]


@pytest.fixture
def team_stack(lab: Any, s3_bucket: S3Bucket) -> Iterator[dict[str, str]]:
    """The team's operator environment (the bucket, its keys, the passphrase); afterwards
    the stack destroyed and removed, `blog` and its disk gone, core pointing at old."""
    for host in ("old", "new"):
        lab.run(host, ["rm", "-f", "--", DISK], timeout=30)
    env = engine_env()
    env.pop("PULUMI_CONFIG_PASSPHRASE_FILE", None)
    env.update(s3_bucket.env(), PULUMI_CONFIG_PASSPHRASE=LAB_PASSPHRASE)
    try:
        yield env
    finally:
        try:
            if STACK_FILE.exists():
                destroyed = _cli(env, "destroy", "--yes", "--skip-preview", timeout=600)
                print(destroyed.stdout + destroyed.stderr)
                _cli(env, "stack", "rm", "--yes", "--force", "--preserve-config")
        finally:
            STACK_FILE.unlink(missing_ok=True)
            remove_vm_everywhere(["blog"], [DISK])
            baseline.switch_core("old")


def test_a_team_moves_a_vm_through_reviewed_plans(
    lab: Any, s3_bucket: S3Bucket, team_stack: dict[str, str], tmp_path: Path
) -> None:
    pipeline = Pipeline(tmp_path, s3_bucket)

    # An empty bucket: the team creates the stack in it once (gitops.md, step 3).
    assert s3_bucket.server.keys(s3_bucket.name) == []
    shutil.copyfile(PROJECT_ROOT / "stacks" / "Pulumi.lab.yaml", STACK_FILE)
    # A copy bounded to 16 MiB/s takes seconds, long enough for the second `up` below to
    # meet the first one mid-move.
    raw = yaml.safe_load(STACK_FILE.read_text())
    raw["config"]["glidepath:vms"]["blog"]["migration"]["bandwidth_mib_s"] = 16
    STACK_FILE.write_text(yaml.safe_dump(raw, sort_keys=False))
    created = _cli(team_stack, "stack", "init", "--secrets-provider", "passphrase")
    assert created.returncode == 0, created.stderr
    assert f".pulumi/stacks/glidepath/{STACK}.json" in s3_bucket.server.keys(s3_bucket.name)

    # Pull request 1 puts blog on old: previewed, commented, saved as the plan; merged, the
    # approved deploy fetches that plan and runs it.
    preview = pipeline.pull_request(1, "1" * 40)
    assert _last(preview).returncode == 0
    (comment,) = fake_gh.comments(pipeline.github)
    assert comment["pr"] == "1" and "Saved as the update plan" in comment["body"]
    deploy = pipeline.run_job("up", pipeline.merge(1, "1" * 40))
    assert [r.returncode for r in deploy.values()] == [0, 0], list(deploy)
    assert (
        "of pull request #1"
        in deploy["Fetch the plan the merged pull request's preview saved"].stdout
    )
    assert lab.where("blog") == ["old"]
    assert s3_bucket.lock_keys() == []

    # Pull request 2 moves blog to new. While its deploy migrates, an operator's `pulumi
    # up` of the same stack (a laptop, the same bucket) is refused by the backend's lock.
    _set_host("new")
    preview = pipeline.pull_request(2, "2" * 40)
    assert _last(preview).returncode == 0
    assert "blog: live-migrate old -> new" in fake_gh.comments(pipeline.github)[-1]["body"]
    steps = dict(pipeline.steps("up", pipeline.merge(2, "2" * 40)))
    fetch_argv, fetch_env = steps["Fetch the plan the merged pull request's preview saved"][1]
    fetched = subprocess.run(
        fetch_argv,
        cwd=PROJECT_ROOT,
        env=fetch_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert fetched.returncode == 0, fetched.stderr
    up_argv, up_env = steps["pulumi up --plan"][1]
    job = subprocess.Popen(
        up_argv,
        cwd=PROJECT_ROOT,
        env=up_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    log: list[str] = []
    try:
        assert job.stdout is not None
        deadline = time.monotonic() + 300
        for line in job.stdout:  # bounded by the job itself and the deadline
            log.append(line)
            if "blog: migrating old -> new" in line or time.monotonic() > deadline:
                break
        assert any("blog: migrating old -> new" in line for line in log), "".join(log)
        second = _cli(team_stack, "up", "--yes")
        refused = second.stdout + second.stderr
        holder = re.search(r"created by (\S+)@(\S+) \(pid (\d+)\)", refused)
        assert holder, refused
        # The holder it names is the deploy's own `pulumi up`, still running.
        holder_pid = int(holder.group(3))
        assert os.getsid(holder_pid) == job.pid, refused
        assert "up" in Path(f"/proc/{holder_pid}/cmdline").read_text().split("\0"), refused
        for line in job.stdout:
            log.append(line)
        assert job.wait(timeout=600) == 0, "".join(log)
    finally:
        if job.poll() is None:
            job.kill()
            job.wait(timeout=30)
    print("".join(log))
    print(refused)
    assert second.returncode != 0
    assert "the stack is currently locked by 1 lock(s)" in refused, refused
    assert holder.group(1) == getpass.getuser() and holder.group(2) == socket.gethostname()
    assert "Previewing update" not in refused  # refused before its program ran
    assert "blog: moved old -> new" in "".join(log)
    assert lab.where("blog") == ["new"]
    assert s3_bucket.lock_keys() == []
    # Nothing half-done: the hosts are exactly what the state says, and the stack file
    # asks for nothing more.
    for check in (("refresh", "--yes", "--expect-no-changes"), ("preview", "--expect-no-changes")):
        result = _cli(team_stack, *check)
        assert result.returncode == 0, result.stdout + result.stderr
    settled = {host: host_network(lab, host) for host in ("old", "new")}

    # Pull request 3 would move blog back; main changes after its preview (a direct push
    # nobody reviewed): the deploy refuses the plan, and the hosts keep what they have.
    _set_host("old")
    preview = pipeline.pull_request(3, "3" * 40)
    assert _last(preview).returncode == 0
    raw = yaml.safe_load(STACK_FILE.read_text())
    raw["config"]["glidepath:vms"]["blog"]["migration"]["max_downtime_ms"] = 300
    STACK_FILE.write_text(yaml.safe_dump(raw, sort_keys=False))
    deploy = pipeline.run_job("up", pipeline.merge(3, "3" * 40))
    refused_up = deploy["pulumi up --plan"]
    assert refused_up.returncode != 0
    assert "violates plan" in refused_up.stdout + refused_up.stderr
    assert "blog: migrating" not in refused_up.stdout
    assert lab.where("blog") == ["new"]
    assert {host: host_network(lab, host) for host in ("old", "new")} == settled
    assert s3_bucket.lock_keys() == []
