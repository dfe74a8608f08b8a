"""Stacks of glidepath's own program on the lab, driven through the Automation API as a
user drives the CLI: the e2e tests, the benchmarks and anything else that moves lab VMs
through `pulumi up` share these handles.

A `GeneratedStack` is a copy of the committed lab stack (`stacks/Pulumi.<name>.yaml`,
git-ignored for the e2e-* and bench-* names) with its own VMs, edited as a whole.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from pulumi import automation as auto

from engine import PROJECT_ROOT
from engine.workspace import project_stack
from lab import baseline, guest, lifecycle
from lab.proc import run

# A line of `pulumi up` output that says what failed: the engine's `error:` lines, a
# resource marked **... failed**, and the provider's exception (`...Error: text`).
ERROR_LINE = re.compile(r"\berror:|[A-Za-z]Error: |\*\*[a-z ]*failed\*\*")


class LabStack:
    """The e2e stack with the operations a user does, and their captured output."""

    def __init__(self, stack: auto.Stack) -> None:
        self.stack = stack
        self.output: list[str] = []
        self.steps: list[tuple[str, str, str]] = []  # (op, type, urn) of the last run
        self.refreshing = False
        self.before_first_up: dict[str, dict[str, str]] = {}
        self.echo = True  # print the engine's output as it comes

    def _event(self, event: auto.EngineEvent) -> None:
        pre, outputs = event.resource_pre_event, event.res_outputs_event
        # A refresh announces every resource as "refresh"; what it found (same, update
        # for drift, delete for gone) comes with the outputs event.
        if pre is not None and pre.metadata.op.value != "refresh":
            self.steps.append((str(pre.metadata.op.value), pre.metadata.type, pre.metadata.urn))
        elif outputs is not None and self.refreshing:
            meta = outputs.metadata
            self.steps.append((str(meta.op.value), meta.type, meta.urn))

    def changes(self) -> list[tuple[str, str, str]]:
        """The last run's steps that change something."""
        return [step for step in self.steps if step[0] not in ("same", "read")]

    def _sink(self, line: str) -> None:
        self.output.append(line)
        if self.echo:
            print(line)

    def set_vm_host(self, vm: str, host: str) -> None:
        self.stack.set_config(f"glidepath:vms.{vm}.host", auto.ConfigValue(host), path=True)

    def up(self) -> auto.UpResult:
        self.output, self.steps = [], []
        try:
            return self.stack.up(on_output=self._sink, on_event=self._event, color="never")
        except auto.CommandError:
            # The engine's own error lines, together: in a long failed `up` they sit in
            # the middle of its output, where a shortened report cuts them out.
            print("pulumi up failed:\n  " + "\n  ".join(self.error_lines()))
            raise

    def error_lines(self, at_most: int = 20) -> list[str]:
        """The last run's lines that carry an error (the resources' and the engine's)."""
        found = [line.strip() for line in self.output if ERROR_LINE.search(line)]
        return found[-at_most:]

    def preview(self) -> auto.PreviewResult:
        self.output, self.steps = [], []
        # With --diff the CLI writes the providers' messages (the move's plan) to stderr.
        return self.stack.preview(
            diff=True,
            on_output=self._sink,
            on_error=self._sink,
            on_event=self._event,
            color="never",
        )

    def refresh(self) -> auto.RefreshResult:
        self.output, self.steps, self.refreshing = [], [], True
        try:
            return self.stack.refresh(on_output=self._sink, on_event=self._event, color="never")
        finally:
            self.refreshing = False

    def outputs(self) -> dict[str, Any]:
        return {key: value.value for key, value in self.stack.outputs().items()}


LAB_STACK_FILE = PROJECT_ROOT / "stacks" / "Pulumi.lab.yaml"
IMAGES = "/var/lib/libvirt/images"


def lab_vm(name: str, vif: int, host: str, **extra: Any) -> dict[str, Any]:
    """A VM entry like the lab stack's `blog`, for vifN (IP 203.0.113.N+2); `extra`
    overrides fields (memory_mib, disks, migration, ...)."""
    raw = yaml.safe_load(LAB_STACK_FILE.read_text())
    blog = raw["config"]["glidepath:vms"]["blog"]
    ip = f"203.0.113.{vif + 2}"
    boot = dict(blog["boot"])
    boot["cmdline"] = f"console=ttyS0 panic=-1 gp.ip={ip} gp.prefix=203.0.113.0/29 gp.name={name}"
    return {
        **blog,
        "host": host,
        "ip": ip,
        "vif": f"vif{vif}",
        "disks": [{"path": f"{IMAGES}/{name}.img", "size_mib": 64}],
        "boot": boot,
        **extra,
    }


def lab_hosts() -> list[str]:
    """Every hypervisor the lab has now (it may have grown since the session started)."""
    import lab as lab_module

    return list(lab_module.status()["hosts"])


class GeneratedStack(LabStack):
    """A LabStack whose config file (`stacks/Pulumi.e2e-<name>.yaml`) the test edits as a
    whole: `config` is its `config:` mapping; `save()` writes it back."""

    def __init__(self, stack: auto.Stack, path: Path, raw: dict[str, Any]) -> None:
        super().__init__(stack)
        self.path = path
        self.raw = raw
        self.stamped: list[tuple[float, str]] = []  # (time.monotonic(), line), every run

    def _sink(self, line: str) -> None:
        self.stamped.append((time.monotonic(), line))
        super()._sink(line)

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.raw["config"])

    def vms(self) -> dict[str, dict[str, Any]]:
        return dict(self.raw["config"]["glidepath:vms"])

    def save(self) -> None:
        self.path.write_text(yaml.safe_dump(self.raw, sort_keys=False))

    def set(self, key: str, value: Any) -> None:
        """Set `glidepath:<key>` (a whole top-level value) and save."""
        self.raw["config"][f"glidepath:{key}"] = value
        self.save()

    def set_secret(self, key: str, fields: Mapping[str, str]) -> None:
        """Set `glidepath:<key>` to a mapping of secrets (`glidepath:robot`): the CLI
        encrypts each with the stack's passphrase, as `pulumi config set --secret --path`
        does, and the file is read back, so a later `save()` keeps the `secure:` values."""
        self.save()
        for field, value in fields.items():
            self.stack.set_config(
                f"glidepath:{key}.{field}", auto.ConfigValue(value, secret=True), path=True
            )
        self.raw = yaml.safe_load(self.path.read_text())

    def move(self, vm: str, host: str) -> None:
        self.raw["config"]["glidepath:vms"][vm]["host"] = host
        self.save()

    def set_upstream(self, network: str, upstream: str) -> None:
        self.raw["config"]["glidepath:networks"][network]["upstream"] = upstream
        self.save()

    def disks(self) -> list[str]:
        return [d["path"] for vm in self.vms().values() for d in vm.get("disks", [])]

    def up(self) -> auto.UpResult:
        try:
            return super().up()
        except auto.CommandError:
            # A VM that stopped answering may be the lab guest's own failure: keep its
            # console in the report. Reading files only: no call that a fault under test
            # could stall, and nothing here may replace the error itself.
            state = lifecycle.load_state()
            with contextlib.suppress(OSError):
                print(guest.console_tails(list(self.vms()), list(state.hosts) if state else []))
            raise


def remove_vm_everywhere(names: list[str], disks: list[str]) -> None:
    """Stop and undefine these domains and delete these disk files and their console logs
    on every lab host (a console tail in a report must be this run's). Block devices
    (lab volumes, lab/blockdev.py) are the test's that made them: it removes them."""
    files = [path for path in disks if not path.startswith("/dev/")]
    for host in lab_hosts():
        for name in names:
            run(host, ["virsh", "destroy", name], check=False, timeout=30)
            run(host, ["virsh", "undefine", name], check=False, timeout=30)
            guest.console_log(host, name).unlink(missing_ok=True)
        if files:
            run(host, ["rm", "-f", "--", *files], check=False, timeout=30)


def new_generated_stack(name: str, vms: dict[str, dict[str, Any]]) -> GeneratedStack:
    """A stack `name` with the lab stack's hosts, link and network and these VMs instead
    of `blog`, starting from blank disks (their domains removed from every host)."""
    path = PROJECT_ROOT / "stacks" / f"Pulumi.{name}.yaml"
    raw = yaml.safe_load(LAB_STACK_FILE.read_text())
    raw["config"]["glidepath:vms"] = vms
    disks = [d["path"] for vm in vms.values() for d in vm.get("disks", [])]
    remove_vm_everywhere(list(vms), disks)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return GeneratedStack(project_stack(name), path, raw)


def remove_generated_stack(handle: GeneratedStack) -> None:
    """Destroy it, remove the stack and its file, and its VMs and disks from every host
    (by hand: the destroy releases the VMs, and may have failed)."""
    name = handle.stack.name
    try:
        handle.stack.destroy(on_output=print, color="never")
    except Exception as err:  # cleanup goes on: hosts are cleaned by hand below
        print(f"destroy of {name} failed: {err}")
    finally:
        handle.stack.workspace.remove_stack(name, force=True)
        handle.path.unlink(missing_ok=True)
        remove_vm_everywhere(list(handle.vms()), handle.disks())


@contextmanager
def generated_stack(name: str, vms: dict[str, dict[str, Any]]) -> Iterator[GeneratedStack]:
    """`new_generated_stack`, removed afterwards whatever happens; core points at old."""
    handle = new_generated_stack(name, vms)
    try:
        yield handle
    finally:
        try:
            remove_generated_stack(handle)
        finally:
            baseline.switch_core("old")
