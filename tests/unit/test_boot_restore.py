"""The boot step (providers/boot/restore.py) and the plans that persist what glidepath
applies (providers/boot/persist.py). The restore's argv must be what the providers run
to apply the same artifact: each case builds a record as the provider writes it and
compares with that provider's own plan on a host that has nothing (a fresh boot)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from providers.boot import persist, restore
from providers.plans import mangle_mark, policy_rule, route, tunnel

pytestmark = [pytest.mark.unit]

TUNNEL: tunnel.Tunnel = {
    "tun": 2,
    "user": "root",
    "peer": "198.18.2.2",
    "port": 22,
    "address": "198.18.100.1/24",
    "peer_address": "198.18.100.2/24",
}
ALIAS = tunnel.owner_alias("198.18.1.2", "198.18.2.2")


def _record(kind: str, name: str, **fields: object) -> dict[str, object]:
    return {**json.loads(persist.render(kind, fields)), "name": name}


def test_a_rule_is_added_as_policy_rule_adds_it() -> None:
    record = _record("rule", "rule-1000", priority=1000, fwmark=1, table_id=201)
    step = restore.step(record)
    assert step.commands == policy_rule.plan_add(1000, 1, 201, {}, []).commands
    assert step.commands == (
        ("ip", "-4", "rule", "add", "priority", "1000", "fwmark", "0x1", "table", "201"),
    )


@pytest.mark.parametrize(
    ("via", "dev", "table_id", "metric"),
    [("198.18.100.1", None, 201, 0), ("198.18.100.2", "tun2", 254, 100), (None, "tun2", 254, 0)],
)
def test_a_route_is_replaced_as_route_sets_it(
    via: str | None, dev: str | None, table_id: int, metric: int
) -> None:
    dst = "203.0.113.0/29"
    record = _record("route", "r", dst=dst, via=via, dev=dev, table_id=table_id, metric=metric)
    expected = route.plan_set(dst, via, dev, table_id, metric, {}, []).commands
    assert restore.step(record).commands == expected
    assert restore.step(record).check is None  # replace: the same route again is no change


def test_a_mark_is_appended_as_mangle_mark_adds_it_and_checked_first() -> None:
    rule = mangle_mark.desired_rule("PREROUTING", "203.0.113.0/29", "vif+", 1, "glidepath net0")
    fields = {k: rule[k] for k in ("chain", "source", "in_interface", "comment", "mark")}
    step = restore.step(_record("mark", "m", **fields))
    assert step.commands == mangle_mark.plan_add(rule, []).commands
    assert step.check is not None
    assert step.check[:5] == ("iptables", "-w", "-t", "mangle", "-C")
    assert step.check[5:] == step.commands[0][5:]


def test_a_tunnel_device_as_the_tunnel_makes_it() -> None:
    record = _record(
        "tundev", "tundev-tun2", dev="tun2", address="198.18.100.1/24", alias=ALIAS, mtu=16000
    )
    created = tunnel.plan_device("tun2", "198.18.100.1/24", ALIAS, None).commands
    # The runner adds `ip tuntap add` only where the device is missing (a second run).
    assert created[0] == ("ip", "tuntap", "add", "dev", "tun2", "mode", "tun")
    assert set(restore.step(record).commands) == set(created[1:])


def test_a_keeper_is_started_with_the_argv_the_tunnel_starts_it_with() -> None:
    args = list(tunnel.keeper_args(TUNNEL))
    record = _record("keeper", "keeper-" + tunnel.record_base(TUNNEL), args=args)
    assert restore.step(record).commands == (tunnel.start_argv(TUNNEL),)
    assert restore.keeper_argv(record) == (tunnel.SCRIPT_PATH, *args)
    assert restore.KEEPER == tunnel.SCRIPT_PATH
    assert restore.RUN_DIR == tunnel.RUN_DIR
    # Its pid file is found from the record's name, as the keeper names it.
    assert tunnel.pid_file(TUNNEL) == f"{restore.RUN_DIR}/{tunnel.record_base(TUNNEL)}.pid"


def test_keeper_running_reads_cmdline_as_proc_gives_it() -> None:
    record = _record("keeper", "k", args=list(tunnel.keeper_args(TUNNEL)))
    ours = ["/bin/bash", *restore.keeper_argv(record)]
    assert restore.keeper_running(ours, record)
    assert not restore.keeper_running(None, record)
    assert not restore.keeper_running(["/bin/bash", "other", *ours[2:]], record)
    other: tunnel.Tunnel = {**TUNNEL, "address": "198.18.100.9/24"}
    outdated = ["/bin/bash", tunnel.SCRIPT_PATH, *tunnel.keeper_args(other)]
    assert not restore.keeper_running(outdated, record)


def test_boot_order_devices_before_routes_keepers_last() -> None:
    records = [
        _record("keeper", "keeper-x", args=["v1"]),
        _record("mark", "mark-x", chain="PREROUTING", source="203.0.113.0/29",
                in_interface="vif+", comment="glidepath", mark=1),
        _record("route", "route-b", dst="0.0.0.0/0", via="198.18.100.1", dev=None,
                table_id=201, metric=0),
        _record("route", "route-a", dst="203.0.113.0/29", via="198.18.100.2", dev="tun2",
                table_id=254, metric=100),
        _record("rule", "rule-1000", priority=1000, fwmark=1, table_id=201),
        _record("tundev", "tundev-tun2", dev="tun2", address="198.18.100.1/24",
                alias=ALIAS, mtu=16000),
    ]  # fmt: skip
    names = [r["name"] for r in restore.ordered(records)]
    assert names == ["tundev-tun2", "rule-1000", "route-a", "route-b", "mark-x", "keeper-x"]
    assert len(restore.steps(records)) == len(records)


@pytest.mark.parametrize(
    "record",
    [
        {"kind": "firewall", "name": "x"},
        {"kind": "rule", "name": "x", "priority": 1000},
        {"kind": "route", "name": "x", "dst": "203.0.113.0/29", "table_id": "main", "metric": 0},
        {"kind": "keeper", "name": "x", "args": []},
    ],
)
def test_a_record_that_does_not_say_enough_is_an_error(record: dict[str, object]) -> None:
    with pytest.raises(restore.RecordError):
        restore.step(record)


def test_has_rule_from_ip_json() -> None:
    # `ip -j -4 rule show priority 1000` on a lab host (iproute2 6.1).
    shown = json.loads('[{"priority":1000,"src":"all","fwmark":"0x1","table":"201"}]')
    record = _record("rule", "r", priority=1000, fwmark=1, table_id=201)
    assert restore.has_rule(shown, record)
    assert not restore.has_rule(shown, {**record, "fwmark": 2})
    assert not restore.has_rule(shown, {**record, "table_id": 202})
    masked = [{**shown[0], "fwmask": "0xff"}]
    assert not restore.has_rule(masked, record)
    assert not restore.has_rule([], record)


def test_load_reads_records_and_skips_writes_in_progress(tmp_path: Path) -> None:
    (tmp_path / "rule-1000.json").write_text(persist.render("rule", {"priority": 1000}))
    (tmp_path / ".rule-2000.json.glidepath-ab12").write_text("{half")
    (tmp_path / "README").write_text("not a record")
    assert restore.load(str(tmp_path)) == [{"kind": "rule", "priority": 1000, "name": "rule-1000"}]
    assert restore.load(str(tmp_path / "missing")) == []


def test_the_installed_script_is_this_module_and_runs_alone(tmp_path: Path) -> None:
    assert persist.restorer_script() == Path(restore.__file__).read_text()
    # Standalone: no import from the repository (it runs on the hypervisor).
    copy = tmp_path / "boot-restore"
    shutil.copyfile(restore.__file__, copy)
    empty = tmp_path / "boot.d"
    empty.mkdir()
    done = subprocess.run(
        [sys.executable, "-I", str(copy), "restore", "--boot-dir", str(empty)],
        capture_output=True, text=True, timeout=30, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    usage = subprocess.run(
        [sys.executable, "-I", str(copy)], capture_output=True, text=True, timeout=30, check=False
    )
    assert usage.returncode == 2
    assert "usage" in usage.stderr


# --- persist: the plans the providers apply --------------------------------------------


def test_record_names_are_file_names() -> None:
    assert persist.record_name("rule", 1000) == "rule-1000"
    assert persist.record_name("route", 201, "0.0.0.0/0", 0) == "route-201-0.0.0.0_0-0"
    name = persist.record_name(
        "mark", "PREROUTING", "203.0.113.0/29", "vif+", "0x1", "glidepath net0"
    )
    assert name == "mark-PREROUTING-203.0.113.0_29-vif_-0x1-glidepath_net0"
    assert persist.record_path("rule-1000") == "/etc/glidepath/boot.d/rule-1000.json"
    with pytest.raises(ValueError, match="unknown record kind"):
        persist.record_name("sysctl", "x")


def test_a_record_is_written_once() -> None:
    content = persist.render("rule", {"priority": 1000, "fwmark": 1, "table_id": 201})
    written = persist.plan_record("rule-1000", content, None)
    assert [w.path for w in written.writes] == ["/etc/glidepath/boot.d/rule-1000.json"]
    assert written.writes[0].mode == "0600"
    assert not persist.plan_record("rule-1000", content, content)
    assert persist.plan_record("rule-1000", content, content + " ").writes
    assert persist.plan_forget("rule-1000", True).commands == (
        ("rm", "-f", "--", "/etc/glidepath/boot.d/rule-1000.json"),
    )
    assert not persist.plan_forget("rule-1000", False)


def test_a_sysctl_goes_to_sysctl_d() -> None:
    key = "net.ipv4.ip_forward"
    plan = persist.plan_sysctl(key, "1", None)
    path = "/etc/sysctl.d/99-zz-glidepath-net.ipv4.ip_forward.conf"
    assert [w.path for w in plan.writes] == [path]
    assert path > "/etc/sysctl.d/99-sysctl.conf"  # the last file applied
    assert plan.writes[0].content.endswith("\nnet.ipv4.ip_forward = 1\n")
    assert not persist.plan_sysctl(key, "1", plan.writes[0].content)
    assert persist.plan_sysctl(key, "0", plan.writes[0].content).writes
    assert persist.plan_sysctl_forget(key, True).commands == (("rm", "-f", "--", path),)
    assert not persist.plan_sysctl_forget(key, False)


def test_the_boot_step_without_systemd_is_the_script_alone() -> None:
    plan = persist.plan_restorer(None, False, None, None)
    assert [(w.path, w.mode) for w in plan.writes] == [(persist.RESTORER, "0755")]
    assert plan.commands == ()
    assert not persist.plan_restorer(persist.restorer_script(), False, None, None)


def test_the_boot_step_with_systemd_has_its_units_enabled() -> None:
    plan = persist.plan_restorer(persist.restorer_script(), True, None, None)
    assert [w.path for w in plan.writes] == [persist.RESTORE_UNIT, persist.KEEPER_UNIT]
    assert plan.commands == (
        ("systemctl", "daemon-reload"),
        ("systemctl", "enable", "glidepath-restore.service"),
    )
    assert "Before=libvirtd.service" in persist.RESTORE_UNIT_TEXT
    assert "Restart=always" in persist.KEEPER_UNIT_TEXT
    done = persist.plan_restorer(
        persist.restorer_script(), True, persist.RESTORE_UNIT_TEXT, persist.KEEPER_UNIT_TEXT
    )
    assert not done
    keeper_only = persist.plan_restorer(
        persist.restorer_script(), True, persist.RESTORE_UNIT_TEXT, None
    )
    assert keeper_only.commands == (("systemctl", "daemon-reload"),)


def test_a_keeper_on_systemd_is_its_unit() -> None:
    unit = "glidepath-tunnel@tunnel-tun2-198.18.2.2.service"
    assert tunnel.unit(TUNNEL) == unit == persist.keeper_unit(tunnel.record_base(TUNNEL))
    assert tunnel.start_argv(TUNNEL, systemd=True) == ("systemctl", "enable", "--now", unit)
    assert tunnel.plan_unit_stop(TUNNEL, True).commands == (
        ("systemctl", "disable", "--now", unit),
    )
    assert not tunnel.plan_unit_stop(TUNNEL, False)
