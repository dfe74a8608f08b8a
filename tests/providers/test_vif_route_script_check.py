"""VifRouteScript.check and the generated script itself (no lab, no host)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from pulumi.runtime import rpc

from providers.plans import vif_route_script as plans
from providers.vif_route_script import VifRouteScriptProvider, sha256

pytestmark = [pytest.mark.unit]

HOST = {"name": "new", "address": "198.18.2.2"}
ROUTES = {"vif1": "203.0.113.3", "vif0": "203.0.113.2"}


def _check(**inputs: Any) -> tuple[dict[str, Any], dict[str, str]]:
    news = {"host": HOST, "routes": ROUTES}
    news.update(inputs)
    result = VifRouteScriptProvider().check({}, news)
    return result.inputs, {f.property: f.reason for f in result.failures or []}


def test_defaults_and_derived_fields() -> None:
    inputs, failures = _check()
    assert failures == {}
    assert inputs["path"] == "/etc/libvirt/scripts/vif-route"
    assert inputs["owner"] == "glidepath"  # direct provider calls; a stack names itself
    assert list(inputs["routes"]) == ["vif0", "vif1"]  # canonical order
    assert inputs["mode"] == "0755"
    assert inputs["sha256"] == sha256(plans.render(inputs["path"]))
    assert inputs["fragment_sha256"] == sha256(plans.render_fragment(inputs["routes"]))


def test_the_script_is_the_same_whatever_the_routes() -> None:
    one, _ = _check(owner="glidepath.lab")
    other, _ = _check(owner="glidepath.bench", routes={"vif5": "203.0.113.7"})
    assert one["sha256"] == other["sha256"]
    assert one["fragment_sha256"] != other["fragment_sha256"]


def test_addresses_are_canonicalised() -> None:
    inputs, failures = _check(routes={"vif0": " 203.0.113.2 "})
    assert failures == {}
    assert inputs["routes"] == {"vif0": "203.0.113.2"}


def test_empty_fleet_is_allowed() -> None:
    inputs, failures = _check(routes={})
    assert failures == {} and inputs["routes"] == {}


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("path", "etc/libvirt/scripts/vif-route"),  # relative
        ("path", "/etc/libvirt/../../root/.bashrc"),
        ("path", "/etc/libvirt/scripts/"),
        ("path", "/etc/libvirt/scripts/vif route"),
        ("path", "/etc/libvirt/scripts/$(reboot)"),
        ("path", "/etc//vif-route"),
        ("path", 7),
        ("owner", "../../root/.ssh/authorized_keys"),
        ("owner", "glidepath/lab"),
        ("owner", "-rf"),
        ("owner", ".hidden"),
        ("owner", "glidepath lab"),
        ("owner", "glidepath.lab\n"),
        ("owner", ""),
        ("owner", 7),
        ("routes", {"vif+": "203.0.113.2"}),  # a wildcard is one tap of many
        ("routes", {"vif0;reboot": "203.0.113.2"}),
        ("routes", {"a-very-long-vif-name": "203.0.113.2"}),
        ("routes", {"vif0": "203.0.113.2/32"}),
        ("routes", {"vif0": "2001:db8::2"}),
        ("routes", {"vif0": "$(reboot)"}),
        ("routes", {"vif0": "203.0.113.2", "vif1": "203.0.113.2"}),
        ("routes", ["vif0", "203.0.113.2"]),
        ("routes", None),
    ],
)
def test_bad_values_fail_naming_the_field(field: str, bad: Any) -> None:
    inputs, failures = _check(**{field: bad})
    assert list(failures) == [field]
    assert failures[field].startswith(field)
    # Nothing derived from bad input.
    derived = {"path": "sha256", "routes": "fragment_sha256"}.get(field)
    assert derived is None or derived not in inputs


def test_unknown_routes_at_preview_are_left_for_up() -> None:
    inputs, failures = _check(routes={"vif0": rpc.UNKNOWN})
    assert failures == {}
    assert "fragment_sha256" not in inputs
    assert inputs["sha256"] == sha256(plans.render(inputs["path"]))  # the script is known


def test_routes_or_owner_change_updates_and_path_change_replaces_writing_first() -> None:
    provider = VifRouteScriptProvider()
    olds, _ = _check()
    news, _ = _check(routes={**ROUTES, "vif2": "203.0.113.4"})
    diff = provider.diff("id", olds, news)
    assert diff.changes and diff.replaces == []
    news, _ = _check(owner="glidepath.lab")
    diff = provider.diff("id", olds, news)
    assert diff.changes and diff.replaces == []
    news, _ = _check(path="/etc/libvirt/scripts/vif-route2")
    diff = provider.diff("id", olds, news)
    assert diff.replaces == ["path"] and diff.delete_before_replace is False
    assert provider.diff("id", dict(olds), olds).changes is False


def test_a_state_from_before_the_owners_files_is_an_update() -> None:
    provider = VifRouteScriptProvider()
    news, _ = _check(owner="glidepath.lab")
    olds = {
        **{key: news[key] for key in ("host", "path", "routes")},
        "sha256": "0" * 64,
        "mode": "0755",
        "previous": None,
        "previous_mode": None,
    }
    diff = provider.diff("id", olds, news)
    assert diff.changes and diff.replaces == []


def test_a_hand_edit_seen_by_read_is_an_update() -> None:
    provider = VifRouteScriptProvider()
    news, _ = _check()
    for field in ("sha256", "fragment_sha256"):
        refreshed = {**news, field: sha256("edited")}  # what read reports after an edit
        diff = provider.diff("id", refreshed, news)
        assert diff.changes and diff.replaces == []


# --- the script, run ------------------------------------------------------------------


def test_generated_script_is_valid_sh(tmp_path: Path) -> None:
    script = tmp_path / "vif-route"
    script.write_text(plans.render("/etc/libvirt/scripts/vif-route"))
    subprocess.run(["sh", "-n", str(script)], check=True)
    # bash too: the blog's script was bash, some hosts link /bin/sh to it
    subprocess.run(["bash", "-n", str(script)], check=True)


class Host:
    """The script at a path under tmp_path, run with a stub `ip` that records its argv,
    and /proc/sys and the hold directory moved under tmp_path too (the script's text
    with those two prefixes replaced): everything it does, seen without a kernel."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / "scripts" / "vif-route"
        self.fragments = Path(f"{self.path}.d")
        self.log = root / "ip.log"
        self.holds = root / "hold"
        stub = root / "bin" / "ip"
        stub.parent.mkdir()
        stub.write_text(f'#!/bin/sh\necho "$*" >> {self.log}\n')
        stub.chmod(0o755)
        self.env = {**os.environ, "PATH": f"{stub.parent}:{os.environ['PATH']}"}
        text = plans.render(str(self.path))
        assert text.count('"/proc/sys/') == 2 and text.count(plans.HOLD_DIR) == 1
        text = text.replace('"/proc/sys/', f'"{root}/proc/sys/')
        text = text.replace(plans.HOLD_DIR, str(self.holds))
        self.path.parent.mkdir()
        self.path.write_text(text)
        self.path.chmod(0o755)

    def fragment(self, owner: str, text: str) -> None:
        self.fragments.mkdir(exist_ok=True)
        (self.fragments / owner).write_text(text)

    def tap(self, dev: str) -> None:
        for sub in (f"conf/{dev}", f"neigh/{dev}"):
            (self.root / "proc" / "sys" / "net" / "ipv4" / sub).mkdir(parents=True)
        (self.root / "proc/sys/net/ipv4/conf" / dev / "proxy_arp").write_text("0\n")
        (self.root / "proc/sys/net/ipv4/neigh" / dev / "proxy_delay").write_text("80\n")

    def proc(self, what: str, dev: str) -> str:
        return (self.root / "proc/sys/net/ipv4" / what.format(dev=dev)).read_text()

    def start(self, dev: str) -> list[str]:
        """libvirt creating the tap: what `ip` was asked, in order."""
        self.log.unlink(missing_ok=True)
        done = subprocess.run([str(self.path), dev], env=self.env, capture_output=True, check=False)
        assert done.returncode == 0, done.stderr
        return self.log.read_text().splitlines() if self.log.exists() else []


def test_a_tap_is_routed_from_whichever_owner_lists_it(tmp_path: Path) -> None:
    host = Host(tmp_path)
    host.fragment("glidepath.lab", "vif0 203.0.113.2\nvif1 203.0.113.3\n")
    host.fragment("glidepath.bench", "vif5 203.0.113.7")  # by hand: no final newline
    # A half-written file is hidden (transport writes beside the file, then renames).
    host.fragment(".glidepath.bench.glidepath-0123456789ab", "vif7 203.0.113.99\n")
    for dev, address in (("vif1", "203.0.113.3"), ("vif5", "203.0.113.7")):
        host.tap(dev)
        assert host.start(dev) == [
            f"link set dev {dev} up",
            f"route replace {address}/32 dev {dev}",
        ]
        assert host.proc("conf/{dev}/proxy_arp", dev) == "1\n"
        assert host.proc("neigh/{dev}/proxy_delay", dev) == "0\n"
    host.tap("vif7")
    assert host.start("vif7") == ["link set dev vif7 up"]
    assert host.proc("conf/{dev}/proxy_arp", "vif7") == "0\n"


def test_a_tap_listed_nowhere_is_only_brought_up(tmp_path: Path) -> None:
    host = Host(tmp_path)
    assert host.start("vif9") == ["link set dev vif9 up"]  # no owners' directory at all
    host.fragment("glidepath.lab", "")  # a stack without VMs
    host.fragment("notes", "# vif9 203.0.113.9\n\nvif9\n")  # comments, blanks, half lines
    assert host.start("vif9") == ["link set dev vif9 up"]


def test_a_current_hold_keeps_the_route_off_the_tap(tmp_path: Path) -> None:
    host = Host(tmp_path)
    host.fragment("glidepath.lab", "vif0 203.0.113.2\n")
    host.tap("vif0")
    host.holds.mkdir()
    now = int(time.time())
    (host.holds / "vif0").write_text(f"{now + 60}\n")
    assert host.start("vif0") == ["link set dev vif0 up"]
    assert host.proc("conf/{dev}/proxy_arp", "vif0") == "1\n"  # proxy ARP meanwhile
    (host.holds / "vif0").write_text(f"{now - 1}\n")
    assert host.start("vif0")[-1] == "route replace 203.0.113.2/32 dev vif0"


def test_missing_argument_fails() -> None:
    script = plans.render("/etc/libvirt/scripts/vif-route")
    done = subprocess.run(["sh", "-c", script], capture_output=True, check=False)
    assert done.returncode != 0  # set -u: no tap name, no guessing
