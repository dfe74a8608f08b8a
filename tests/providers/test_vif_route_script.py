"""VifRouteScript against lab host `new`: create (directory included), apply again
(nothing runs), the script run for real on a tap, update, drift seen by read and
repaired, delete that leaves a hand-edited script alone, delete, delete again; and two
owners (two stacks) sharing the script on the host, the first to go leaving it and the
other's file of routes in place.

The script goes to a directory of its own, never to the lab's own
/etc/libvirt/scripts/vif-route; the cleanup removes that directory and the taps.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
from pulumi.dynamic import CreateResult, ReadResult, UpdateResult

from providers.plans import PlanError, handover
from providers.plans import vif_route_script as plans
from providers.vif_route_script import VifRouteScriptProvider

pytestmark = [pytest.mark.lab]

HOST = "new"
DIRECTORY = f"/etc/libvirt/scripts-test-{os.getpid()}"
PATH = f"{DIRECTORY}/vif-route"
FRAGMENTS = f"{PATH}.d"
OWNER = "glidepath"  # the provider's own default, as in direct calls
ROUTES = {"vif0": "203.0.113.2", "vif7": "203.0.113.200"}
TAPS = ("vif7", "vif8")
HOLD = handover.hold_path("vif7")


def _outs(result: CreateResult | UpdateResult | ReadResult) -> dict[str, Any]:
    assert result.outs is not None
    return result.outs


@pytest.fixture
def cleanup(lab: Any) -> Iterator[None]:
    yield
    for tap in TAPS:
        lab.run(HOST, ["ip", "link", "del", tap], check=False)  # takes its routes along
    lab.run(HOST, ["rm", "-rf", "--", DIRECTORY])
    lab.run(HOST, ["rm", "-f", "--", HOLD])


@pytest.fixture
def provider(lab_credentials: Any) -> VifRouteScriptProvider:
    provider = VifRouteScriptProvider()
    provider.use_credentials(lab_credentials)
    return provider


def _inputs(provider: VifRouteScriptProvider, lab_endpoint: Any, **extra: Any) -> dict[str, Any]:
    news = {"host": lab_endpoint(HOST), "path": PATH, "routes": ROUTES}
    news.update(extra)
    checked = provider.check({}, news)
    assert not checked.failures
    return dict(checked.inputs)


def _file(lab: Any, path: str = PATH) -> tuple[str, str] | None:
    done = lab.run(HOST, ["stat", "-c", "%a", "--", path], check=False)
    if done.returncode != 0:
        return None
    return done.stdout.strip(), lab.run(HOST, ["cat", "--", path]).stdout


def _owners(lab: Any) -> list[str]:
    done = lab.run(HOST, ["ls", "-A", "--", FRAGMENTS], check=False)
    return done.stdout.split() if done.returncode == 0 else []


def _routes(lab: Any, tap: str) -> list[tuple[str, str | None]]:
    routes = json.loads(lab.run(HOST, ["ip", "-j", "route", "show", "dev", tap]).stdout)
    return [(r["dst"], r.get("scope")) for r in routes]


def test_create_apply_again_update_delete(
    provider: VifRouteScriptProvider, lab_endpoint: Any, applied: Any, lab: Any, cleanup: None
) -> None:
    inputs = _inputs(provider, lab_endpoint)
    applied.mark()
    created = provider.create(inputs)
    assert applied.steps == [
        (HOST, ("install", "-d", "-m", "0755", "--", DIRECTORY)),
        (HOST, ("write", f"{FRAGMENTS}/{OWNER}")),
        (HOST, ("write", PATH)),
    ]
    assert _file(lab) == ("755", plans.render(PATH))
    assert _file(lab, f"{FRAGMENTS}/{OWNER}") == ("644", plans.render_fragment(ROUTES))
    assert _file(lab, plans.saved_path(PATH)) is None  # nothing was there to keep
    outs = _outs(created)
    assert (outs["sha256"], outs["mode"]) == (inputs["sha256"], "0755")
    assert outs["fragment_sha256"] == inputs["fragment_sha256"]

    applied.mark()
    provider.create(inputs)
    provider.update(created.id, _outs(created), inputs)
    assert applied.steps == []  # the host already matches: nothing ran
    read = provider.read(created.id, _outs(created))
    assert read.id == created.id and _outs(read) == _outs(created)

    routes = {"vif0": "203.0.113.2", "vif1": "203.0.113.3"}
    news = _inputs(provider, lab_endpoint, routes=routes)
    diff = provider.diff(created.id, _outs(created), news)
    assert diff.changes and not diff.replaces
    applied.mark()
    updated = provider.update(created.id, _outs(created), news)
    assert applied.steps == [(HOST, ("write", f"{FRAGMENTS}/{OWNER}"))]  # the script stays
    assert _file(lab, f"{FRAGMENTS}/{OWNER}") == ("644", plans.render_fragment(routes))
    assert _outs(updated)["routes"] == routes

    applied.mark()
    provider.delete(created.id, _outs(updated))
    assert applied.steps == [
        (HOST, ("rm", "-f", "--", f"{FRAGMENTS}/{OWNER}")),
        (HOST, ("rmdir", "--ignore-fail-on-non-empty", "--", FRAGMENTS)),
        (HOST, ("rm", "-f", "--", PATH)),
    ]
    assert _file(lab) is None and _owners(lab) == []
    applied.mark()
    provider.delete(created.id, _outs(updated))  # already absent is success
    assert applied.steps == []
    assert provider.read(created.id, _outs(updated)).id == ""


def test_script_routes_a_tap_for_real(
    provider: VifRouteScriptProvider, lab_endpoint: Any, lab: Any, cleanup: None
) -> None:
    provider.create(_inputs(provider, lab_endpoint))
    # This kernel has no dummy links; a tap is what libvirt hands the script anyway.
    for tap in TAPS:
        lab.run(HOST, ["ip", "tuntap", "add", "dev", tap, "mode", "tap"])
    assert lab.run(HOST, ["cat", "/proc/sys/net/ipv4/neigh/vif7/proxy_delay"]).stdout == "80\n"

    lab.run(HOST, [PATH, "vif7"])
    assert _routes(lab, "vif7") == [("203.0.113.200", "link")]
    assert lab.run(HOST, ["cat", "/proc/sys/net/ipv4/conf/vif7/proxy_arp"]).stdout == "1\n"
    assert lab.run(HOST, ["cat", "/proc/sys/net/ipv4/neigh/vif7/proxy_delay"]).stdout == "0\n"
    link = json.loads(lab.run(HOST, ["ip", "-j", "link", "show", "dev", "vif7"]).stdout)
    assert "UP" in link[0]["flags"]
    lab.run(HOST, [PATH, "vif7"])  # again, as on a libvirtd restart: still fine

    # A VM migrating in: a current hold keeps the route off the tap (proxy ARP is on);
    # a lapsed one does not.
    lab.run(HOST, ["ip", "route", "del", "203.0.113.200/32", "dev", "vif7"])
    lab.run(HOST, handover.make_hold_dir())
    now = int(lab.run(HOST, ["date", "+%s"]).stdout)
    for until, routed in ((now + 60, []), (now - 1, [("203.0.113.200", "link")])):
        lab.run(HOST, ["tee", "--", HOLD], input=f"{until}\n")
        lab.run(HOST, [PATH, "vif7"])
        assert _routes(lab, "vif7") == routed, until - now
        assert lab.run(HOST, ["cat", "/proc/sys/net/ipv4/conf/vif7/proxy_arp"]).stdout == "1\n"

    # A tap no VM of any stack uses: brought up, nothing else, exit 0.
    lab.run(HOST, [PATH, "vif8"])
    assert _routes(lab, "vif8") == []
    assert lab.run(HOST, ["cat", "/proc/sys/net/ipv4/conf/vif8/proxy_arp"]).stdout == "0\n"
    link = json.loads(lab.run(HOST, ["ip", "-j", "link", "show", "dev", "vif8"]).stdout)
    assert "UP" in link[0]["flags"]


def test_drift_is_seen_and_repaired_and_a_hand_edit_survives_delete(
    provider: VifRouteScriptProvider, lab_endpoint: Any, applied: Any, lab: Any, cleanup: None
) -> None:
    inputs = _inputs(provider, lab_endpoint)
    created = provider.create(inputs)

    lab.run(HOST, ["chmod", "0644", "--", PATH])  # libvirt could no longer run it
    read = provider.read(created.id, _outs(created))
    assert _outs(read)["mode"] == "0644"
    assert provider.diff(created.id, _outs(read), inputs).changes
    applied.mark()
    repaired = provider.update(created.id, _outs(read), inputs)
    assert applied.steps == [(HOST, ("write", PATH))]
    assert _file(lab) == ("755", plans.render(PATH))

    # A hand edit of the script: only its digest tells.
    lab.run(HOST, ["sed", "-i", "/neigh/d", "--", PATH])
    read = provider.read(created.id, _outs(repaired))
    assert _outs(read)["routes"] == ROUTES and _outs(read)["sha256"] != inputs["sha256"]
    diff = provider.diff(created.id, _outs(read), inputs)
    assert diff.changes and not diff.replaces

    # A hand edit of the owner's file shows in `routes`.
    lab.run(HOST, ["sed", "-i", "s/203.0.113.200/203.0.113.201/", "--", f"{FRAGMENTS}/{OWNER}"])
    read = provider.read(created.id, _outs(repaired))
    assert _outs(read)["routes"] == {"vif0": "203.0.113.2", "vif7": "203.0.113.201"}
    assert _outs(read)["fragment_sha256"] != inputs["fragment_sha256"]

    # The script is not what we wrote: delete removes the owner's file only.
    applied.mark()
    provider.delete(created.id, _outs(repaired))
    assert applied.steps == [
        (HOST, ("rm", "-f", "--", f"{FRAGMENTS}/{OWNER}")),
        (HOST, ("rmdir", "--ignore-fail-on-non-empty", "--", FRAGMENTS)),
    ]
    assert _file(lab) is not None

    provider.update(created.id, _outs(read), inputs)  # `up` puts ours back
    assert _file(lab) == ("755", plans.render(PATH))
    assert _owners(lab) == [OWNER]
    lab.run(HOST, ["rm", "-f", "--", PATH])  # the script alone removed: drift, not gone
    read = provider.read(created.id, _outs(repaired))
    assert read.id == created.id and _outs(read)["sha256"] is None
    lab.run(HOST, ["rm", "-rf", "--", FRAGMENTS])
    assert provider.read(created.id, _outs(repaired)).id == ""  # both removed by hand: gone


def test_two_owners_share_the_script_and_the_first_to_go_leaves_it(
    provider: VifRouteScriptProvider,
    lab_endpoint: Any,
    applied: Any,
    lab: Any,
    cleanup: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lab_inputs = _inputs(provider, lab_endpoint, owner="glidepath.lab-test")
    bench_inputs = _inputs(
        provider, lab_endpoint, owner="glidepath.bench-test", routes={"vif8": "203.0.113.201"}
    )
    lab_stack = provider.create(lab_inputs)
    applied.mark()
    bench = provider.create(bench_inputs)
    assert applied.steps == [(HOST, ("write", f"{FRAGMENTS}/glidepath.bench-test"))]
    assert _owners(lab) == ["glidepath.bench-test", "glidepath.lab-test"]

    # A third stack wanting a tap the first one routes: refused, nothing written.
    clash = _inputs(
        provider, lab_endpoint, owner="glidepath.team-test", routes={"vif7": "203.0.113.5"}
    )
    applied.mark()
    with pytest.raises(
        PlanError, match=re.escape("glidepath.lab-test routes vif7 to 203.0.113.200")
    ):
        provider.create(clash)
    assert applied.steps == []
    assert _owners(lab) == ["glidepath.bench-test", "glidepath.lab-test"]

    for tap in TAPS:
        lab.run(HOST, ["ip", "tuntap", "add", "dev", tap, "mode", "tap"])
    lab.run(HOST, [PATH, "vif8"])
    assert _routes(lab, "vif8") == [("203.0.113.201", "link")]  # the second stack's VM

    capsys.readouterr()
    applied.mark()
    provider.delete(bench.id, _outs(bench))
    assert applied.steps == [(HOST, ("rm", "-f", "--", f"{FRAGMENTS}/glidepath.bench-test"))]
    assert f"{PATH} left for glidepath.lab-test" in capsys.readouterr().out
    assert _file(lab) == ("755", plans.render(PATH))
    assert _owners(lab) == ["glidepath.lab-test"]
    # The first stack's VMs still get their route, and a refresh of it sees no change.
    lab.run(HOST, [PATH, "vif7"])
    assert _routes(lab, "vif7") == [("203.0.113.200", "link")]
    assert _outs(provider.read(lab_stack.id, _outs(lab_stack))) == _outs(lab_stack)

    provider.delete(lab_stack.id, _outs(lab_stack))  # the last owner: the script goes
    assert _file(lab) is None and _owners(lab) == []
