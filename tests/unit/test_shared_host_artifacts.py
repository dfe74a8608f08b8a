"""Two stacks on one host share the vif-route script and the sysctls: the providers'
whole create/read/update/delete, for two owners, on a stand-in host that is this machine
under tmp_path (no lab).

The stand-in runs every command the way sshd would, `sh -c` on the argv quoted by
transport's one quoting point, on real files: the script's path is under tmp_path, and
so is the owners' directory (OWNERS_DIR, patched). Only `sysctl` is answered from a dict,
so no kernel parameter of this machine changes.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from providers import owners, transport
from providers.plans import PlanError
from providers.plans import sysctl as sysctl_plans
from providers.plans import vif_route_script as plans
from providers.sysctl import SysctlProvider
from providers.transport import (
    CommandError,
    CommandResult,
    Endpoint,
    SshCredentials,
    SshSession,
    quote_argv,
)
from providers.vif_route_script import VifRouteScriptProvider, sha256
from tests.support.steps import StepLog

pytestmark = [pytest.mark.unit]

HOST = {"name": "old", "address": "192.0.2.1"}
LAB, BENCH, TEAM = "glidepath.lab", "glidepath.bench", "infra.team-b"
#: The host's own script, as the lab has it: what glidepath finds and must put back.
HOSTS_OWN = '#!/bin/sh\n# the host\'s own vif-route\nip link set "$1" up\nexit 0\n'


class LocalHost(SshSession):
    """This machine as the host: argv quoted by `quote_argv` and run by `sh -c`, as sshd
    runs it; `sysctl` answered from `sysctls` instead of the kernel."""

    def __init__(self, sysctls: dict[str, str] | None = None) -> None:
        super().__init__(Endpoint("old", "192.0.2.1"), SshCredentials("", ""))
        self.sysctls = dict(sysctls or {})

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        stdin: str | bytes | None = None,
        timeout: float = 30,
    ) -> CommandResult:
        command = tuple(argv)
        if command[0] == "sysctl":
            result = self._sysctl(command)
        else:
            line = quote_argv(command) + ("" if stdin is not None else " </dev/null")
            data = stdin.encode() if isinstance(stdin, str) else stdin
            done = subprocess.run(
                ["sh", "-c", line], input=data, capture_output=True, timeout=timeout, check=False
            )
            result = CommandResult(
                command, done.returncode, done.stdout.decode(), done.stderr.decode()
            )
        if check and not result.ok:
            raise CommandError(self.endpoint.name, result)
        return result

    def _sysctl(self, argv: tuple[str, ...]) -> CommandResult:
        if argv[:2] == ("sysctl", "-n"):
            if argv[2] not in self.sysctls:
                return CommandResult(argv, 255, "", f"sysctl: cannot stat {argv[2]}\n")
            return CommandResult(argv, 0, self.sysctls[argv[2]] + "\n", "")
        assert argv[:3] == ("sysctl", "-q", "-w"), argv
        key, value = argv[3].split("=", 1)
        self.sysctls[key] = value
        return CommandResult(argv, 0, "", "")


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> LocalHost:
    local = LocalHost({"net.ipv4.ip_forward": "0"})
    monkeypatch.setattr(transport, "session", lambda endpoint, credentials: local)
    monkeypatch.setattr(owners, "OWNERS_DIR", str(tmp_path / "var-lib-glidepath" / "owners"))
    return local


def _ran(log: StepLog) -> list[tuple[str, ...]]:
    """The steps run since `log.mark()`, without the host (there is one)."""
    return [step for _, step in log.steps]


# --- the vif-route script -------------------------------------------------------------


class Script:
    """The script's files under tmp_path, and a provider per owner."""

    def __init__(self, root: Path) -> None:
        self.path = root / "etc-libvirt" / "scripts" / "vif-route"
        self.fragments = Path(f"{self.path}.d")
        self.saved = Path(f"{self.path}.before-glidepath")

    def provider(self) -> VifRouteScriptProvider:
        provider = VifRouteScriptProvider()
        provider.use_credentials(SshCredentials("", ""))
        return provider

    def inputs(self, owner: str, routes: dict[str, str]) -> dict[str, Any]:
        news = {"host": HOST, "path": str(self.path), "owner": owner, "routes": routes}
        checked = self.provider().check({}, news)
        assert not checked.failures
        return dict(checked.inputs)

    def create(self, owner: str, routes: dict[str, str]) -> dict[str, Any]:
        outs = self.provider().create(self.inputs(owner, routes)).outs
        assert outs is not None
        return dict(outs)

    def delete(self, outs: dict[str, Any]) -> None:
        self.provider().delete("id", outs)

    def read(self, outs: dict[str, Any]) -> dict[str, Any] | None:
        read = self.provider().read("id", outs)
        return dict(read.outs) if read.id and read.outs is not None else None

    def files(self) -> dict[str, tuple[str, str]]:
        """Every file of the script's directory (owners' files included): (mode, text)."""
        directory = self.path.parent
        return {
            str(p.relative_to(directory)): (f"{p.stat().st_mode & 0o7777:04o}", p.read_text())
            for p in sorted(directory.rglob("*"))
            if p.is_file()
        }

    def own_file(self, owner: str) -> str | None:
        path = self.fragments / owner
        return path.read_text() if path.exists() else None


@pytest.fixture
def script(tmp_path: Path, host: LocalHost) -> Script:
    return Script(tmp_path)


def _write(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def test_two_owners_share_the_script_and_the_last_puts_back_the_hosts_own(
    script: Script, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(script.path, HOSTS_OWN, 0o750)
    steps = StepLog()
    lab = script.create(LAB, {"vif4": "203.0.113.6"})
    assert _ran(steps) == [
        ("write", str(script.saved)),
        ("write", str(script.fragments / LAB)),
        ("write", str(script.path)),
    ]
    assert script.files() == {
        "vif-route": ("0755", plans.render(str(script.path))),
        "vif-route.before-glidepath": ("0750", HOSTS_OWN),
        f"vif-route.d/{LAB}": ("0644", "vif4 203.0.113.6\n"),
    }

    steps.mark()
    bench = script.create(BENCH, {"vif5": "203.0.113.7"})
    assert _ran(steps) == [("write", str(script.fragments / BENCH))]  # its own file, nothing else
    assert script.own_file(BENCH) == "vif5 203.0.113.7\n"
    assert script.read(lab) == lab and script.read(bench) == bench  # no drift either way

    steps.mark()
    capsys.readouterr()
    script.delete(bench)
    assert _ran(steps) == [("rm", "-f", "--", str(script.fragments / BENCH))]
    assert f"{script.path} left for {LAB}" in capsys.readouterr().out
    assert script.files() == {
        "vif-route": ("0755", plans.render(str(script.path))),
        "vif-route.before-glidepath": ("0750", HOSTS_OWN),
        f"vif-route.d/{LAB}": ("0644", "vif4 203.0.113.6\n"),
    }
    assert script.read(lab) == lab  # the other stack's refresh finds nothing changed

    script.delete(lab)
    assert script.files() == {"vif-route": ("0750", HOSTS_OWN)}
    assert not script.fragments.exists()
    steps.mark()
    script.delete(lab)  # again: nothing of ours is left, the host's own stays
    assert _ran(steps) == []
    assert script.files() == {"vif-route": ("0750", HOSTS_OWN)}


def test_without_a_script_before_the_last_owner_removes_it_whoever_came_first(
    script: Script,
) -> None:
    lab = script.create(LAB, {"vif4": "203.0.113.6"})
    bench = script.create(BENCH, {})  # a stack without VMs on this host holds it too
    assert script.own_file(BENCH) == ""
    script.delete(lab)  # the first owner goes first
    assert set(script.files()) == {"vif-route", f"vif-route.d/{BENCH}"}
    script.delete(bench)
    assert script.files() == {}
    assert script.path.parent.is_dir()  # the directory libvirt's scripts live in stays


@pytest.mark.parametrize(
    ("routes", "named"),
    [
        ({"vif4": "203.0.113.9"}, f"{LAB} routes vif4 to 203.0.113.6, and {TEAM} routes vif4"),
        ({"vif9": "203.0.113.6"}, f"{LAB} routes 203.0.113.6 to vif4, and {TEAM} routes"),
        ({"vif4": "203.0.113.6"}, f"{LAB} routes vif4 to 203.0.113.6"),
    ],
)
def test_a_vif_or_address_of_another_owner_fails_before_anything_is_written(
    script: Script, routes: dict[str, str], named: str
) -> None:
    _write(script.path, HOSTS_OWN, 0o755)
    script.create(LAB, {"vif4": "203.0.113.6"})
    before = script.files()
    steps = StepLog()
    with pytest.raises(PlanError, match=named):
        script.create(TEAM, {"vif0": "203.0.113.2", **routes})
    assert _ran(steps) == [] and script.files() == before


def test_an_update_that_takes_another_owners_vif_fails_and_changes_nothing(
    script: Script,
) -> None:
    script.create(LAB, {"vif4": "203.0.113.6"})
    bench = script.create(BENCH, {"vif5": "203.0.113.7"})
    before = script.files()
    news = script.inputs(BENCH, {"vif4": "203.0.113.7"})
    with pytest.raises(PlanError, match=f"{LAB} routes vif4 to 203.0.113.6"):
        script.provider().update("id", bench, news)
    assert script.files() == before


def test_drift_of_the_own_file_or_the_script_is_seen_and_repaired(script: Script) -> None:
    lab = script.create(LAB, {"vif4": "203.0.113.6"})
    script.create(BENCH, {"vif5": "203.0.113.7"})
    provider = script.provider()
    wanted = script.inputs(LAB, {"vif4": "203.0.113.6"})

    (script.fragments / LAB).write_text("vif4 203.0.113.6\nvif9 203.0.113.9\n")
    read = script.read(lab)
    assert read is not None and read["routes"] == {"vif4": "203.0.113.6", "vif9": "203.0.113.9"}
    assert provider.diff("id", read, wanted).changes
    steps = StepLog()
    provider.update("id", read, wanted)
    assert _ran(steps) == [("write", str(script.fragments / LAB))]

    (script.fragments / BENCH).write_text("vif5 203.0.113.8\n")  # another stack's file
    assert script.read(lab) == lab  # is not this stack's drift

    script.path.chmod(0o644)
    read = script.read(lab)
    assert read is not None and read["mode"] == "0644"
    assert provider.diff("id", read, wanted).changes
    script.path.unlink()
    read = script.read(lab)
    assert read is not None and read["sha256"] is None
    steps.mark()
    provider.update("id", read, wanted)
    assert _ran(steps) == [("write", str(script.path))]
    assert script.read(lab) == lab


def test_a_script_changed_by_hand_is_left_in_place_by_the_last_owner(
    script: Script, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(script.path, HOSTS_OWN, 0o755)
    lab = script.create(LAB, {"vif4": "203.0.113.6"})
    with script.path.open("a") as edit:
        edit.write("echo mine\n")
    capsys.readouterr()
    script.delete(lab)
    assert "changed since glidepath wrote it; left in place" in capsys.readouterr().out
    assert set(script.files()) == {"vif-route", "vif-route.before-glidepath"}


def test_a_new_owner_name_moves_the_own_file(script: Script) -> None:
    old = script.create("glidepath.lab-old", {"vif4": "203.0.113.6"})
    steps = StepLog()
    script.provider().update("id", old, script.inputs(LAB, {"vif4": "203.0.113.6"}))
    assert _ran(steps) == [
        ("write", str(script.fragments / LAB)),
        ("rm", "-f", "--", str(script.fragments / "glidepath.lab-old")),
    ]
    assert set(script.files()) == {"vif-route", f"vif-route.d/{LAB}"}


def _legacy(script: Script, routes: dict[str, str]) -> dict[str, Any]:
    """The script and outputs a state from before the owners' files has: the routes inside
    the script, the host's own script in `previous`."""
    arms = "".join(f"    {vif}) ip={address} ;;\n" for vif, address in routes.items())
    text = f'#!/bin/sh\n{plans.MARK} from the stack\ncase "$dev" in\n{arms}esac\n'
    _write(script.path, text, 0o755)
    return {
        "host": HOST,
        "path": str(script.path),
        "routes": routes,
        "sha256": sha256(text),
        "mode": "0755",
        "previous": HOSTS_OWN,
        "previous_mode": "0700",
    }


def test_a_state_from_before_the_owners_files_restores_from_its_outputs(
    script: Script,
) -> None:
    outs = _legacy(script, {"vif0": "203.0.113.2"})
    script.delete(outs)
    assert script.files() == {"vif-route": ("0700", HOSTS_OWN)}


def test_a_state_from_before_the_owners_files_is_saved_at_its_first_update(
    script: Script,
) -> None:
    outs = _legacy(script, {"vif0": "203.0.113.2"})
    news = script.inputs(LAB, {"vif0": "203.0.113.2"})
    assert script.provider().diff("id", outs, news).changes
    updated = script.provider().update("id", outs, news).outs
    assert updated is not None and "previous" not in updated
    assert script.files()["vif-route.before-glidepath"] == ("0700", HOSTS_OWN)
    script.delete(dict(updated))
    assert script.files() == {"vif-route": ("0700", HOSTS_OWN)}


# --- sysctls ----------------------------------------------------------------------------


KEY = "net.ipv4.ip_forward"


def _sysctl(owner: str, value: str = "1") -> tuple[SysctlProvider, dict[str, Any]]:
    provider = SysctlProvider()
    provider.use_credentials(SshCredentials("", ""))
    checked = provider.check({}, {"host": HOST, "key": KEY, "value": value, "owner": owner})
    assert not checked.failures
    return provider, dict(checked.inputs)


def _held(host: LocalHost) -> dict[str, Any]:
    directory = Path(owners.OWNERS_DIR)
    kept = Path(sysctl_plans.saved_path(KEY))
    holders = directory / sysctl_plans.artifact(KEY)
    return {
        "value": host.sysctls.get(KEY),
        "owners": sorted(os.listdir(holders)) if holders.exists() else None,
        "kept": kept.read_text() if kept.exists() else None,
    }


def _create(owner: str) -> dict[str, Any]:
    provider, inputs = _sysctl(owner)
    outs = provider.create(inputs).outs
    assert outs is not None
    return dict(outs)


def _delete(outs: dict[str, Any]) -> None:
    provider, _ = _sysctl(LAB)
    provider.delete("id", outs)


def test_two_owners_share_a_sysctl_and_the_last_puts_back_the_value_from_before(
    host: LocalHost, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = _create(LAB)
    assert _held(host) == {"value": "1", "owners": [LAB], "kept": "0\n"}
    bench = _create(BENCH)
    assert bench["previous"] == "1"  # what it found: the first owner's value
    assert _held(host) == {"value": "1", "owners": [BENCH, LAB], "kept": "0\n"}

    capsys.readouterr()
    _delete(lab)  # the first owner goes first
    assert f"{KEY} left at 1 for {BENCH}" in capsys.readouterr().out
    assert _held(host) == {"value": "1", "owners": [BENCH], "kept": "0\n"}

    _delete(bench)  # the last one puts back what was there before glidepath, not its own
    assert _held(host) == {"value": "0", "owners": None, "kept": None}


def test_a_sysctl_changed_by_hand_is_left_by_the_last_owner(host: LocalHost) -> None:
    lab = _create(LAB)
    host.sysctls[KEY] = "2"
    _delete(lab)
    assert _held(host) == {"value": "2", "owners": None, "kept": None}


def test_a_sysctl_state_from_before_the_owners_restores_its_previous(host: LocalHost) -> None:
    # Set by a stack before owners existed: no owner file, `previous` in its outputs only.
    host.sysctls[KEY] = "1"
    _delete({"host": HOST, "key": KEY, "value": "1", "previous": "0", "actual": "1"})
    assert _held(host)["value"] == "0"


def test_a_missing_sysctl_fails_before_anything_is_written(host: LocalHost) -> None:
    provider, inputs = _sysctl(LAB)
    inputs["key"] = "net.ipv4.conf.vif9.proxy_arp"
    with pytest.raises(PlanError, match="does not exist"):
        provider.create(inputs)
    assert not Path(owners.OWNERS_DIR).exists()


def test_a_new_owner_name_moves_the_hold(host: LocalHost) -> None:
    old = _create("glidepath.lab-old")
    provider, news = _sysctl(LAB)
    assert provider.diff("id", old, news).changes and not provider.diff("id", old, news).replaces
    provider.update("id", old, news)
    assert _held(host) == {"value": "1", "owners": [LAB], "kept": "0\n"}


def test_a_sysctl_state_from_before_the_owners_keeps_its_previous_at_its_first_update(
    host: LocalHost,
) -> None:
    host.sysctls[KEY] = "1"  # set by this stack before owners existed
    provider, news = _sysctl(LAB)
    olds = {"host": HOST, "key": KEY, "value": "1", "previous": "0", "actual": "1"}
    assert provider.diff("id", olds, news).changes  # the owner is new: an update
    outs = provider.update("id", olds, news).outs
    assert outs is not None and outs["previous"] == "0"
    assert _held(host) == {"value": "1", "owners": [LAB], "kept": "0\n"}
    _delete(dict(outs))
    assert _held(host) == {"value": "0", "owners": None, "kept": None}
