"""A team's backend with the real CLI: the DIY backend on a real S3 server (versitygw on
loopback, tests/support/s3_server.py), its lock, and update plans. No lab: the programs
here are a sleeper (a dynamic provider that touches nothing) and glidepath's own program
in preview only. Two `up`s of one stack on the lab's hosts: tests/e2e/test_team_pipeline.py.
"""

from __future__ import annotations

import getpass
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import paramiko
import pytest
import yaml

from engine import PROJECT_ROOT, engine_env
from tests.engine.test_ci_preview import _stack_config
from tests.support.s3_server import S3Bucket

pytestmark = [pytest.mark.engine]

SLEEPER = """\
import pulumi
from tests.engine.sleeper import Sleeper

nap = Sleeper("nap", seconds=float(pulumi.Config().require("seconds")), print_every=1)
pulumi.export("seconds", nap.seconds)
"""
LOCKED = "the stack is currently locked by 1 lock(s)"


def _env(bucket: S3Bucket) -> dict[str, str]:
    env = engine_env()
    env.pop("PULUMI_CONFIG_PASSPHRASE_FILE", None)
    env.update(bucket.env(), PULUMI_CONFIG_PASSPHRASE=f"team-{os.urandom(6).hex()}")
    return env


def _pulumi(
    project: Path, env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["pulumi", "--non-interactive", "--color", "never", *args],
        cwd=project,
        env=env,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _project(folder: Path, name: str, program: str | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "Pulumi.yaml").write_text(
        f"name: {name}\nruntime:\n  name: python\n  options:\n    toolchain: pip\n"
        f"    virtualenv: {PROJECT_ROOT / '.venv'}\nstackConfigDir: stacks\n"
    )
    (folder / "stacks").mkdir()
    if program is None:
        shutil.copy(PROJECT_ROOT / "__main__.py", folder / "__main__.py")
    else:
        (folder / "__main__.py").write_text(program)
    return folder


def _resources(project: Path, env: dict[str, str], stack: str) -> list[str]:
    exported = _pulumi(project, env, "stack", "export", "--stack", stack)
    assert exported.returncode == 0, exported.stderr
    deployment = json.loads(exported.stdout)["deployment"]
    return [r["urn"] for r in deployment.get("resources") or []]


def test_a_stale_lock_names_its_holder_until_pulumi_cancel(
    s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    """An `up` killed half-way leaves its lock in the bucket: the next `up` is refused and
    names the dead holder (user, host, pid); `pulumi cancel` removes it."""
    project = _project(tmp_path / "sleeper", "sleeper", SLEEPER)
    env = _env(s3_bucket)
    assert _pulumi(project, env, "stack", "init", "team").returncode == 0
    assert _pulumi(project, env, "config", "set", "seconds", "60").returncode == 0
    assert s3_bucket.lock_keys() == []

    # The holder: an `up` in its own process group (so that the kill below reaches its
    # language host and provider too), killed once its resource is being created.
    holder = subprocess.Popen(
        ["pulumi", "--non-interactive", "up", "--yes", "--color", "never"],
        cwd=project,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert holder.stdout is not None
        seen: list[str] = []
        deadline = time.monotonic() + 90
        for line in holder.stdout:  # bounded: the sleeper prints every second
            seen.append(line)
            if "sleeper nap: 1s of 60s" in line or time.monotonic() > deadline:
                break
        assert any("sleeper nap: 1s" in line for line in seen), "".join(seen)
        locks = s3_bucket.lock_keys()
        assert len(locks) == 1 and locks[0].startswith(".pulumi/locks/"), locks
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
    assert s3_bucket.lock_keys() == locks  # nobody removed it: it is stale now

    refused = _pulumi(project, env, "up", "--yes")
    assert refused.returncode != 0
    message = refused.stdout + refused.stderr
    assert LOCKED in message, message
    holder_name = f"created by {getpass.getuser()}@{socket.gethostname()} (pid {holder.pid})"
    assert holder_name in message, message
    assert f"s3://{s3_bucket.name}/{locks[0]}" in message, message
    assert "Previewing update" not in message  # refused before the program ran

    cancelled = _pulumi(project, env, "cancel", "--yes")
    assert cancelled.returncode == 0, cancelled.stderr
    assert s3_bucket.lock_keys() == []
    assert _pulumi(project, env, "config", "set", "seconds", "0").returncode == 0
    after = _pulumi(project, env, "up", "--yes")
    assert after.returncode == 0, after.stdout + after.stderr
    assert s3_bucket.lock_keys() == []  # released at the end of a normal run


def test_up_with_a_saved_plan_runs_it_and_refuses_a_change_made_since(
    s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    """`preview --save-plan` then `up --plan`: the plan applies as it was previewed (the
    control, a dynamic provider), and an `up` whose stack file changed after the preview
    is refused before anything is done (glidepath's own program)."""
    env = _env(s3_bucket)

    # Control: the sleeper's update, planned then applied with its plan.
    sleeper = _project(tmp_path / "sleeper", "sleeper", SLEEPER)
    assert _pulumi(sleeper, env, "stack", "init", "plan-ok").returncode == 0
    assert _pulumi(sleeper, env, "config", "set", "seconds", "0").returncode == 0
    assert _pulumi(sleeper, env, "up", "--yes").returncode == 0
    assert _pulumi(sleeper, env, "config", "set", "seconds", "1").returncode == 0
    secret = ("config", "set", "--secret", "token")
    assert _pulumi(sleeper, env, *secret, stdin="same-value-1234").returncode == 0
    plan = tmp_path / "sleeper-plan.json"
    saved = _pulumi(sleeper, env, "preview", "--save-plan", str(plan))
    assert saved.returncode == 0, saved.stderr
    assert "same-value-1234" not in plan.read_text()
    # As each CI job sets the SSH key again: new ciphertext, same value, same plan.
    stack_file = sleeper / "stacks" / "Pulumi.plan-ok.yaml"
    before = stack_file.read_text()
    assert _pulumi(sleeper, env, *secret, stdin="same-value-1234").returncode == 0
    assert stack_file.read_text() != before
    applied = _pulumi(sleeper, env, "up", "--yes", "--plan", str(plan))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "violates plan" not in applied.stdout + applied.stderr
    assert "1 updated" in applied.stdout
    # The default dynamic provider takes the whole stack config as its inputs: a key that
    # no resource reads, set after the preview, still breaks the plan (so CI must not set
    # anything into the stack between the preview and the up that differs; gitops.md).
    assert _pulumi(sleeper, env, "config", "set", "seconds", "2").returncode == 0
    assert _pulumi(sleeper, env, "preview", "--save-plan", str(plan)).returncode == 0
    assert _pulumi(sleeper, env, "config", "set", "unused", "x").returncode == 0
    refused = _pulumi(sleeper, env, "up", "--yes", "--plan", str(plan))
    message = refused.stdout + refused.stderr
    assert refused.returncode != 0, message
    assert "pulumi:providers:pulumi-python::default violates plan" in message, message
    assert "sleeper:unused" in message, message

    # glidepath's program: a VM to create on `old`, previewed and saved; then the stack
    # file says `new` (a commit nobody reviewed). Creates need no host: nothing is contacted.
    project = _project(tmp_path / "glidepath", "glidepath")
    host_key = paramiko.ECDSAKey.generate()
    stack_file = project / "stacks" / "Pulumi.plan-refused.yaml"
    raw = {"config": _stack_config(f"{host_key.get_name()} {host_key.get_base64()}")}
    stack_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert _pulumi(project, env, "stack", "init", "plan-refused").returncode == 0
    key = io.StringIO()
    paramiko.ECDSAKey.generate().write_private_key(key)
    set_key = _pulumi(
        project, env, "config", "set", "--secret", "--path", "glidepath:ssh.private_key",
        stdin=key.getvalue(),
    )  # fmt: skip
    assert set_key.returncode == 0, set_key.stderr
    plan = tmp_path / "glidepath-plan.json"
    saved = _pulumi(project, env, "preview", "--save-plan", str(plan))
    assert saved.returncode == 0, saved.stdout + saved.stderr
    assert key.getvalue().splitlines()[1] not in plan.read_text()  # secrets stay encrypted

    raw = yaml.safe_load(stack_file.read_text())
    raw["config"]["glidepath:vms"]["web"]["host"] = "new"
    stack_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    refused = _pulumi(project, env, "up", "--yes", "--plan", str(plan))
    message = refused.stdout + refused.stderr
    assert refused.returncode != 0, message
    # The first resource whose inputs differ from the plan's stops the preview that `up`
    # runs first: here the network's upstream, which follows where its VMs are.
    assert "violates plan: properties changed: ++upstream[{old}!={new}]" in message, message
    assert _resources(project, env, "plan-refused") == []
    assert s3_bucket.lock_keys() == []
