"""Upstream's delete against lab hosts `old` and `new`: the prefix stays routed, and the
network's egress marks are removed from every host, also those no MangleMark resource
owns (a cutover that failed after its switch sets them before any resource adopts them).

The network uses a prefix of its own (198.51.100.240/29), so the test never touches the
mangle rules of the lab or of anything else running there; the cleanup removes every rule
with that source, whatever a failed test left behind.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from typing import Any

import pytest

from lab import baseline
from lab import topology as t
from providers.plans import mangle_mark as plans
from providers.upstream import UpstreamProvider

pytestmark = [pytest.mark.lab]

HOSTS = ("old", "new")
SOURCE = "198.51.100.240/29"
NETWORK = "gpdelete"
MARK = 7


def _rules(lab: Any, host: str) -> list[str]:
    saved = lab.run(host, ["iptables-save", "-t", "mangle"]).stdout
    return [line for line in saved.splitlines() if f"-s {SOURCE} " in line]


def _add_by_hand(lab: Any, host: str, comment: str) -> None:
    spec = plans.rule_spec(plans.desired_rule("PREROUTING", SOURCE, "vif+", MARK, comment))
    lab.run(host, ["iptables", "-w", "-t", "mangle", "-A", "PREROUTING", *spec])


@pytest.fixture
def cleanup(lab: Any) -> Iterator[None]:
    yield
    for host in HOSTS:
        for line in _rules(lab, host):
            argv = shlex.split(line)
            lab.run(host, ["iptables", "-w", "-t", "mangle", "-D", *argv[1:]], check=False)
        assert _rules(lab, host) == []


@pytest.fixture
def provider(lab_credentials: Any) -> UpstreamProvider:
    provider = UpstreamProvider()
    provider.use_credentials(lab_credentials)
    return provider


def _inputs(provider: UpstreamProvider, lab_endpoint: Any) -> dict[str, Any]:
    router = {"name": "core", "address": str(t.CORE_ADDRESS), "port": 22, "user": "root"}
    news = {
        "network": NETWORK,
        "prefix": SOURCE,
        "hosts": {h: {**lab_endpoint(h), "uplink": "br0"} for h in HOSTS},
        "upstream": "old",
        "marked": ["new"],
        "mark": MARK,
        "cutover": {"kind": "lab-router", "router": router},
    }
    checked = provider.check({}, news)
    assert not checked.failures, [(f.property, f.reason) for f in checked.failures]
    return dict(checked.inputs)


def test_delete_removes_the_networks_marks_everywhere_and_nothing_else(
    provider: UpstreamProvider, lab_endpoint: Any, lab: Any, cleanup: None
) -> None:
    inputs = _inputs(provider, lab_endpoint)
    routed_before = baseline.core_route()
    # new's mark as a MangleMark resource would leave it, old's as a failed cutover does,
    # and a rule for the same prefix that is somebody else's.
    for host in HOSTS:
        _add_by_hand(lab, host, f"glidepath {NETWORK}")
    _add_by_hand(lab, "old", "not glidepath")

    provider.delete(NETWORK, inputs)
    assert _rules(lab, "new") == []
    assert [line for line in _rules(lab, "old") if "not glidepath" not in line] == []
    assert len(_rules(lab, "old")) == 1  # somebody else's rule stays
    assert baseline.core_route() == routed_before  # the prefix is never un-routed

    provider.delete(NETWORK, inputs)  # already absent is success
    assert len(_rules(lab, "old")) == 1
