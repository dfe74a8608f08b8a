"""The boot step on a real lab host (`new`): a PolicyRule, a Route and a MangleMark made
by their providers leave their records; with the runtime artifacts gone (as after a
boot), `boot-restore restore` puts each back so that read sees no drift; a second run
adds nothing; deleting the resources removes the records, and the boot step then brings
nothing back. (The tunnel's records and a real power cut: tests/e2e/test_reboot.py.)"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from typing import Any

import pytest

from providers.boot import persist
from providers.mangle_mark import MangleMarkProvider
from providers.policy_rule import PolicyRuleProvider
from providers.route import RouteProvider
from tests.providers.iproute_lab import (
    GATEWAY,
    HOST,
    PREFIX,
    checked,
    outs_of,
    provider_for,
    routes_in,
    rules_at,
    scrub,
)

pytestmark = [pytest.mark.lab]

PRIORITY, TABLE, MARK = 31003, 233, 0x7E59
SOURCE = "198.51.100.232/29"  # none of the other provider tests' sources
COMMENT = "glidepath boot-test"


def _records(lab: Any) -> list[str]:
    shown = lab.run(HOST, ["ls", "-A", persist.BOOT_DIR], check=False, timeout=30)
    return sorted(shown.stdout.split())


def _marks(lab: Any) -> list[str]:
    saved = lab.run(HOST, ["iptables-save", "-t", "mangle"], timeout=30).stdout
    return [line for line in saved.splitlines() if COMMENT in line]


def _restore(lab: Any) -> str:
    done = lab.run(HOST, ["python3", persist.RESTORER, "restore"], check=False, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return str(done.stdout)


@pytest.fixture
def providers(lab: Any, lab_credentials: Any) -> Iterator[dict[str, Any]]:
    scrub(lab)
    made: dict[str, Any] = {
        "rule": provider_for(PolicyRuleProvider, lab_credentials),
        "route": provider_for(RouteProvider, lab_credentials),
        "mark": provider_for(MangleMarkProvider, lab_credentials),
    }
    yield made
    scrub(lab)
    for line in _marks(lab):
        argv = shlex.split(line)  # -A PREROUTING -s ... --comment "glidepath boot-test" ...
        lab.run(HOST, ["iptables", "-w", "-t", "mangle", "-D", *argv[1:]], check=False)


def test_the_boot_step_restores_rule_route_and_mark_and_delete_forgets_them(
    lab: Any, lab_endpoint: Any, providers: dict[str, Any]
) -> None:
    host = lab_endpoint(HOST)
    inputs = {
        "rule": checked(providers["rule"], host=host, priority=PRIORITY, fwmark=MARK, table=TABLE),
        "route": checked(providers["route"], host=host, dst=PREFIX, via=GATEWAY, table=TABLE),
        "mark": checked(
            providers["mark"], host=host, source=SOURCE, in_interface="vif+", mark=MARK,
            comment=COMMENT,
        ),
    }  # fmt: skip
    outs = {kind: outs_of(providers[kind].create(news)) for kind, news in inputs.items()}
    records = [
        f"rule-{PRIORITY}.json",
        f"route-{TABLE}-{PREFIX.replace('/', '_')}-0.json",
        f"mark-PREROUTING-{SOURCE.replace('/', '_')}-vif_-{MARK:#x}-glidepath_boot-test.json",
    ]
    assert set(records) <= set(_records(lab)), _records(lab)
    rule = json.loads(lab.run(HOST, ["cat", f"{persist.BOOT_DIR}/{records[0]}"]).stdout)
    assert rule == {"kind": "rule", "priority": PRIORITY, "fwmark": MARK, "table_id": TABLE}

    # The runtime artifacts gone, as after a boot.
    lab.run(HOST, ["ip", "-4", "rule", "del", "priority", str(PRIORITY)])
    lab.run(HOST, ["ip", "-4", "route", "flush", "table", str(TABLE)])
    for line in _marks(lab):
        lab.run(HOST, ["iptables", "-w", "-t", "mangle", "-D", *shlex.split(line)[1:]])
    assert rules_at(lab, PRIORITY) == [] and routes_in(lab, TABLE) == [] and _marks(lab) == []
    gone = {kind: providers[kind].read("id", outs[kind]) for kind in outs}
    assert all(not result.outs for result in gone.values())

    printed = _restore(lab)
    print(printed)
    for kind in outs:
        assert providers[kind].read("id", outs[kind]).outs == outs[kind], kind  # no drift

    # Again: everything is in place, nothing is added twice.
    again = _restore(lab)
    assert f"rule priority {PRIORITY} fwmark {MARK:#x} table {TABLE}: in place" in again
    assert COMMENT in again and "in place" in again.split(COMMENT)[1].splitlines()[0]
    assert len(rules_at(lab, PRIORITY)) == 1 and len(_marks(lab)) == 1
    assert len(routes_in(lab, TABLE)) == 1

    # Deleted: their records go, and a boot brings nothing back.
    for kind in outs:
        providers[kind].delete("id", outs[kind])
    assert not set(records) & set(_records(lab))
    _restore(lab)
    assert rules_at(lab, PRIORITY) == [] and routes_in(lab, TABLE) == [] and _marks(lab) == []


def test_a_tunnel_device_is_made_where_missing_and_someone_elses_is_left(lab: Any) -> None:
    dev, alias = "tun7", "glidepath tunnel boot-test"
    name = persist.record_name("tundev", dev)
    record = persist.render(
        "tundev", {"dev": dev, "address": "198.18.107.2/24", "alias": alias, "mtu": 16000}
    )
    path = persist.record_path(name)
    lab.run(HOST, ["ip", "tuntap", "add", "dev", dev, "mode", "tun"])  # someone else's
    try:
        lab.run(HOST, ["tee", "--", path], input=record, timeout=30)
        done = lab.run(HOST, ["python3", persist.RESTORER, "restore"], check=False, timeout=60)
        assert done.returncode == 1 and f"{dev} exists, not ours" in done.stdout, done.stdout
        link = json.loads(lab.run(HOST, ["ip", "-j", "addr", "show", "dev", dev]).stdout)[0]
        assert not link.get("ifalias") and link["addr_info"] == []

        lab.run(HOST, ["ip", "link", "del", "dev", dev])
        printed = _restore(lab)
        assert f"{dev} 198.18.107.2/24: restored" in printed, printed
        link = json.loads(lab.run(HOST, ["ip", "-j", "-d", "addr", "show", "dev", dev]).stdout)[0]
        assert link["ifalias"] == alias and link["mtu"] == 16000
        assert [a["local"] for a in link["addr_info"]] == ["198.18.107.2"]
        assert f"{dev} 198.18.107.2/24: restored" in _restore(lab)  # again: the same, no error
    finally:
        lab.run(HOST, ["rm", "-f", "--", path], check=False)
        lab.run(HOST, ["ip", "link", "del", "dev", dev], check=False)
