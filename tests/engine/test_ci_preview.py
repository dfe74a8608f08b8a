"""scripts/ci/preview.sh with the real CLI on glidepath's own program: the comment a pull
request gets. A throwaway file backend and a stack that only previews (creates need no
host: nothing is contacted), a fake `gh` as the comment sink, stdin closed.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import paramiko
import pytest
import yaml

from engine import PROJECT_ROOT, engine_env

pytestmark = [pytest.mark.engine]

STACK = "ci-preview"
FAKE_GH = """\
#!/bin/sh
# Records where the comment goes and its body.
while [ $# -gt 0 ]; do
  case "$1" in --body-file) cp "$2" "$FAKE_GH_BODY" ;; esac
  echo "$1" >> "$FAKE_GH_ARGS"
  shift
done
"""


def _stack_config(host_key: str) -> dict[str, object]:
    vm = {
        "network": "net0",
        "memory_mib": 128,
        "migration": {"max_downtime_ms": 100, "timeout_s": 600},
    }
    return {
        "glidepath:hosts": {
            "old": {"address": "198.18.201.2", "uplink": "br0"},
            "new": {"address": "198.18.202.2", "uplink": "br0"},
        },
        "glidepath:ssh": {
            "user": "root",
            "known_hosts": "".join(f"{a} {host_key}\n" for a in ("198.18.201.2", "198.18.202.2")),
        },
        "glidepath:links": [
            {"hosts": ["old", "new"], "tun": 2, "addresses": ["198.18.203.1/24", "198.18.203.2/24"]}
        ],
        "glidepath:networks": {
            "net0": {"prefix": "203.0.113.8/29", "upstream": "auto", "cutover": {"kind": "manual"}}
        },
        "glidepath:vms": {
            "web": {
                **vm,
                "host": "old",
                "ip": "203.0.113.9",
                "vif": "vif1",
                "disks": [{"path": "/var/lib/libvirt/images/web.img", "size_mib": 64}],
            },
        },
    }


def test_preview_script_comments_the_real_preview(tmp_path: Path) -> None:
    project, backend, bin_dir = tmp_path / "project", tmp_path / "backend", tmp_path / "bin"
    for directory in (project / "stacks", backend, bin_dir):
        directory.mkdir(parents=True)
    (project / "Pulumi.yaml").write_text(
        "name: glidepath\nruntime:\n  name: python\n  options:\n    toolchain: pip\n"
        f"    virtualenv: {PROJECT_ROOT / '.venv'}\nstackConfigDir: stacks\n"
    )
    shutil.copy(PROJECT_ROOT / "__main__.py", project / "__main__.py")
    host_key = paramiko.ECDSAKey.generate()
    (project / "stacks" / f"Pulumi.{STACK}.yaml").write_text(
        yaml.safe_dump(
            {"config": _stack_config(f"{host_key.get_name()} {host_key.get_base64()}")},
            sort_keys=False,
        )
    )
    key = io.StringIO()
    paramiko.ECDSAKey.generate().write_private_key(key)
    gh = bin_dir / "gh"
    gh.write_text(FAKE_GH)
    gh.chmod(0o755)
    passphrase = f"ci-{os.urandom(8).hex()}"
    env = engine_env()
    env.pop("PULUMI_CONFIG_PASSPHRASE_FILE", None)
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env['PATH']}",
        PULUMI_BACKEND_URL=f"file://{backend}",
        PULUMI_CONFIG_PASSPHRASE=passphrase,
        GLIDEPATH_STACK=STACK,
        GLIDEPATH_WORK_DIR=str(project),
        GLIDEPATH_INIT_STACK="yes",
        GLIDEPATH_SSH_PRIVATE_KEY=key.getvalue(),
        GLIDEPATH_PR_NUMBER="8",
        GITHUB_SHA="feedface" * 5,
        PYTHON=str(PROJECT_ROOT / ".venv" / "bin" / "python"),
        FAKE_GH_ARGS=str(tmp_path / "gh.args"),
        FAKE_GH_BODY=str(tmp_path / "comment.md"),
    )
    result = subprocess.run(
        ["bash", str(PROJECT_ROOT / "scripts" / "ci" / "preview.sh")],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "gh.args").read_text().split()[:3] == ["pr", "comment", "8"]
    body = (tmp_path / "comment.md").read_text()
    assert f"### glidepath preview of `{STACK}`: ok" in body
    assert "commit feedfacefeed" in body
    assert "Changes: + " in body and "to create" in body
    # The diff: the VM's placement with its inputs, as --diff shows them.
    assert "pulumi-python:dynamic/vm:VmPlacement: (create)" in body
    assert "203.0.113.9" in body
    # The key went in as a secret (stdin, then encrypted in the stack file), never out.
    stack_file = yaml.safe_load((project / "stacks" / f"Pulumi.{STACK}.yaml").read_text())
    assert set(stack_file["config"]["glidepath:ssh"]["private_key"]) == {"secure"}
    everything = body + result.stdout + result.stderr
    for line in key.getvalue().splitlines():
        if len(line) >= 8:
            assert line not in everything
    assert passphrase not in everything
    config = json.loads(
        subprocess.run(
            ["pulumi", "config", "--json", "--stack", STACK, "--cwd", str(project)],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    )
    assert config["glidepath:ssh"]["secret"] is True
