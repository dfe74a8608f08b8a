"""The Upstream's cutover when the switch call gives no answer in time (Robot's POST
returns when its switch is done, which may outlast `timeout_s`): the watch for the first
direct packet goes on, and only that packet moves the egress. A scripted watcher and
backend stand in for the new upstream's trigger and the provider."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from providers.cutover import CutoverError, SwitchPending
from providers.plans import cutover as cutover_plans
from providers.upstream import UpstreamProvider
from tests.support.fake_hosts import FakeSession

pytestmark = [pytest.mark.unit]

PID = "4242"
PENDING = (
    "Robot did not answer POST failover 203.0.113.0 (203.0.113.0/29) within 5 s; the switch "
    "may still be in progress"
)


class Watcher:
    """The trigger as the new upstream runs it: its lines, then its exit status."""

    def __init__(self, lines: Sequence[str], status: int) -> None:
        self.lines, self.status, self.stderr = list(lines), status, ""

    def wait_for_stderr(self, text: str, timeout: float) -> bool:
        return True  # "listening on br0"

    def next_line(self, timeout: float) -> str | None:
        return self.lines.pop(0) if self.lines else None

    def wait(self, timeout: float) -> int | None:
        return self.status

    def close(self) -> None:
        pass


class Host(FakeSession):
    def __init__(self, watcher: Watcher) -> None:
        super().__init__("new")
        self.watcher = watcher

    def start(self, argv: Sequence[str]) -> Any:
        return self.watcher


class Backend:
    kind = "hetzner-robot"

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.switched: list[str] = []

    def current(self) -> str | None:
        return "198.51.100.10"

    def switch(self, address: str) -> None:
        self.switched.append(address)
        raise self.error

    def nudge(self, addresses: list[str]) -> None:
        pass

    def unreachable(self, addresses: list[str]) -> list[str]:
        return []


def _cutover(
    monkeypatch: pytest.MonkeyPatch, watcher: Watcher, error: Exception
) -> tuple[Host, Backend, dict[str, Any] | Exception]:
    provider = UpstreamProvider()
    host, backend = Host(watcher), Backend(error)
    monkeypatch.setattr(provider, "_session", lambda _props, _name: host)
    monkeypatch.setattr(provider, "_backend", lambda _props: backend)
    props = provider.canonical(
        {
            "network": "net0",
            "prefix": "203.0.113.0/29",
            "hosts": {
                "old": {"name": "old", "address": "198.18.1.2", "main_ip": "198.51.100.10"},
                "new": {"name": "new", "address": "198.18.2.2", "main_ip": "198.51.100.20"},
            },
            "upstream": "new",
            "marked": [],
            "mark": 1,
            "cutover": {"kind": "hetzner-robot", "timeout_s": 5},
            "first_packet_timeout_s": 8,
        }
    )
    try:
        return host, backend, provider.cutover(props, "old")
    except CutoverError as failed:
        return host, backend, failed


def test_no_answer_then_the_first_packet_completes_the_cutover(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    watcher = Watcher([f"pid {PID}", cutover_plans.FIRST_PACKET, cutover_plans.DONE], 0)
    host, backend, done = _cutover(monkeypatch, watcher, SwitchPending(PENDING))
    assert backend.switched == ["198.51.100.20"]  # new's main IP, not its SSH address
    assert isinstance(done, dict) and done["to"] == "new"
    assert ("kill", PID) not in host.ran
    assert f"net0: {PENDING}; watching on for the first packet" in capsys.readouterr().out


def test_no_answer_and_no_packet_keeps_the_mark_and_says_both(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    watcher = Watcher([f"pid {PID}", cutover_plans.NO_PACKET], cutover_plans.NO_PACKET_EXIT)
    host, _, failed = _cutover(monkeypatch, watcher, SwitchPending(PENDING))
    assert isinstance(failed, CutoverError)
    message = str(failed)
    assert "no packet for 203.0.113.0/29 arrived directly at new (br0) within 8 s" in message
    assert "new's egress mark stays" in message
    assert "Check that hetzner-robot routes 203.0.113.0/29 to 198.51.100.20" in message
    assert message.endswith(f"({PENDING})")
    # The watch ran its course and dropped nothing: no kill needed, nothing unmarked.
    assert ("kill", PID) not in host.ran


def test_a_switch_that_fails_stops_the_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    watcher = Watcher([f"pid {PID}", cutover_plans.FIRST_PACKET], 0)
    refused = CutoverError("Robot failed while switching ... (500 FAILOVER_FAILED)")
    host, _, failed = _cutover(monkeypatch, watcher, refused)
    assert failed is refused
    # The host must not drop its mark later on its own: its script is stopped.
    assert ("kill", PID) in host.ran
