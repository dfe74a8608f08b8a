"""VifRouteScript.check and the generated script itself (no lab, no host)."""

from __future__ import annotations

import os
import subprocess
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
    assert list(inputs["routes"]) == ["vif0", "vif1"]  # canonical order
    assert inputs["mode"] == "0755"
    assert inputs["sha256"] == sha256(plans.render(inputs["path"], inputs["routes"]))


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
    assert "sha256" not in inputs  # nothing derived from bad input


def test_unknown_routes_at_preview_are_left_for_up() -> None:
    inputs, failures = _check(routes={"vif0": rpc.UNKNOWN})
    assert failures == {}
    assert "sha256" not in inputs


def test_routes_change_updates_and_path_change_replaces_writing_first() -> None:
    provider = VifRouteScriptProvider()
    olds, _ = _check()
    news, _ = _check(routes={**ROUTES, "vif2": "203.0.113.4"})
    diff = provider.diff("id", olds, news)
    assert diff.changes and diff.replaces == []
    news, _ = _check(path="/etc/libvirt/scripts/vif-route2")
    diff = provider.diff("id", olds, news)
    assert diff.replaces == ["path"] and diff.delete_before_replace is False
    assert provider.diff("id", dict(olds), olds).changes is False


def test_a_hand_edit_seen_by_read_is_an_update() -> None:
    provider = VifRouteScriptProvider()
    news, _ = _check()
    refreshed = {**news, "sha256": sha256("edited")}  # what read reports after an edit
    diff = provider.diff("id", refreshed, news)
    assert diff.changes and diff.replaces == []


def test_generated_script_is_valid_sh(tmp_path: Path) -> None:
    routes = {f"vif{i}": f"203.0.113.{i + 2}" for i in range(6)}
    script = tmp_path / "vif-route"
    script.write_text(plans.render("/etc/libvirt/scripts/vif-route", routes))
    subprocess.run(["sh", "-n", str(script)], check=True)
    # bash too: the blog's script was bash, some hosts link /bin/sh to it
    subprocess.run(["bash", "-n", str(script)], check=True)


def test_unknown_vif_only_brings_the_tap_up(tmp_path: Path) -> None:
    # A stub `ip` records its argv; an unknown tap must exit 0 before any route or /proc.
    log = tmp_path / "ip.log"
    stub = tmp_path / "bin" / "ip"
    stub.parent.mkdir()
    stub.write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    stub.chmod(0o755)
    script = tmp_path / "vif-route"
    script.write_text(plans.render("/etc/libvirt/scripts/vif-route", ROUTES))
    env = {**os.environ, "PATH": f"{stub.parent}:{os.environ['PATH']}"}
    done = subprocess.run(["sh", str(script), "vif9"], env=env, check=False)
    assert done.returncode == 0
    assert log.read_text() == "link set dev vif9 up\n"


def test_missing_argument_fails() -> None:
    script = plans.render("/etc/libvirt/scripts/vif-route", ROUTES)
    done = subprocess.run(["sh", "-c", script], capture_output=True, check=False)
    assert done.returncode != 0  # set -u: no tap name, no guessing
