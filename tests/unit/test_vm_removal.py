"""A VM leaving the stack (providers/migration/removal.py and VmPlacement's delete): by
default released, untouched; with `on_remove: shutdown` stopped by ACPI within the
timeout, then undefined; never powered off hard. Fake libvirt domains on a fake clock."""

from __future__ import annotations

import functools
from typing import Any

import libvirt
import pytest

from providers.migration import removal
from providers.schema.vm_placement import VmPlacementArgs
from providers.transport import Endpoint
from providers.vm_placement import VmPlacementProvider

pytestmark = [pytest.mark.unit]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Guest:
    """A domain whose guest stops `stops_after` seconds after the ACPI press that reaches
    it (`answers`: which press, counting from 1; None: it ignores ACPI)."""

    def __init__(
        self,
        clock: Clock,
        *,
        running: bool = True,
        stops_after: float = 2.0,
        answers: int | None = 1,
        state: int = libvirt.VIR_DOMAIN_RUNNING,
        press_fails: bool = False,
    ) -> None:
        self.clock, self.running, self.stops_after = clock, running, stops_after
        self.answers, self._state, self.press_fails = answers, state, press_fails
        self.calls: list[str] = []
        self.presses: list[float] = []
        self.stops_at: float | None = None
        self.defined = True

    def isActive(self) -> bool:
        if self.stops_at is not None and self.clock.now >= self.stops_at:
            self.running = False
        return self.running

    def state(self) -> tuple[int, int]:
        return (self._state if self.isActive() else libvirt.VIR_DOMAIN_SHUTOFF), 0

    def shutdownFlags(self, flags: int) -> None:
        assert flags == libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN
        self.calls.append("shutdown")
        if self.press_fails:
            raise libvirt.libvirtError("Requested operation is not valid: domain is not running")
        self.presses.append(self.clock.now)
        if self.answers == len(self.presses):
            self.stops_at = self.clock.now + self.stops_after

    def destroy(self) -> None:
        self.calls.append("destroy")  # a hard power-off: never asked for
        self.running = False

    def undefine(self) -> None:
        self.calls.append("undefine")
        self.defined = False

    def isPersistent(self) -> bool:
        return self.defined

    def UUIDString(self) -> str:
        return "8c2b3f52-0000-4000-8000-000000000001"

    def autostart(self) -> int:
        return 1  # set at create: an update leaves it

    def setAutostart(self, flag: int) -> None:
        self.calls.append(f"autostart {flag}")


def _shut_down(dom: Guest, timeout_s: int = 120) -> float:
    return removal.shut_down(dom, "blog", "old", timeout_s, clock=dom.clock, sleep=dom.clock.sleep)


def test_a_guest_that_answers_the_power_button_stops_and_is_never_forced() -> None:
    dom = Guest(Clock(), stops_after=3.0)
    assert _shut_down(dom) == pytest.approx(3.0)
    assert dom.calls == ["shutdown"]
    assert not dom.isActive()


def test_the_button_is_pressed_again_for_a_guest_that_missed_it() -> None:
    dom = Guest(Clock(), answers=2, stops_after=1.0)
    assert _shut_down(dom) == pytest.approx(removal.RETRY_S + 1.0)
    assert [t - dom.presses[0] for t in dom.presses] == [0.0, removal.RETRY_S]
    assert "destroy" not in dom.calls


def test_a_guest_that_ignores_acpi_fails_naming_vm_host_and_timeout_and_runs_on() -> None:
    dom = Guest(Clock(), answers=None)
    with pytest.raises(removal.ShutdownError) as raised:
        _shut_down(dom, timeout_s=25)
    message = str(raised.value)
    assert message.startswith(
        "blog: did not stop within shutdown_timeout_s=25 s of the ACPI shutdown request on "
        "old: it still runs there, defined; nothing was forced."
    )
    assert dom.calls == ["shutdown"] * 3  # at 0, 10 and 20 s; no destroy, no undefine
    assert dom.isActive() and dom.defined
    assert dom.clock.now - 1000.0 == pytest.approx(25.0)  # bounded: waited the timeout


def test_a_paused_guest_cannot_answer_and_is_said_so_at_once() -> None:
    dom = Guest(Clock(), state=libvirt.VIR_DOMAIN_PAUSED)
    with pytest.raises(removal.ShutdownError, match="blog: paused on old"):
        _shut_down(dom)
    assert dom.calls == [] and dom.clock.now == 1000.0


def test_a_refused_press_fails_unless_the_guest_stopped_meanwhile() -> None:
    dom = Guest(Clock(), press_fails=True)
    with pytest.raises(removal.ShutdownError, match="the ACPI shutdown request failed on old"):
        _shut_down(dom)
    assert dom.isActive()

    stopped = Guest(Clock(), press_fails=True)
    stopped.stops_at = stopped.clock.now  # it stopped on its own just before the press
    assert _shut_down(stopped) == 0.0


def test_removal_says_what_it_will_do() -> None:
    assert VmPlacementArgs.model_fields["on_remove"].default == "release"
    assert removal.describe(
        {"on_remove": "release", "shutdown_timeout_s": 120, "delete_disks": False}
    ) == ("removing it from the stack releases it: it keeps running, defined")
    assert removal.describe(
        {"on_remove": "shutdown", "shutdown_timeout_s": 60, "delete_disks": True}
    ) == (
        "removing it from the stack shuts it down (ACPI, up to 60 s) and undefines it, "
        "its disks removed"
    )


# --- VmPlacement's delete, over fake libvirt connections and SSH sessions -------------

OLD = {"name": "old", "address": "198.18.1.2"}
NEW = {"name": "new", "address": "198.18.2.2"}
IMG = "/var/lib/libvirt/images/blog.img"


class Connection:
    def __init__(self, dom: Guest | None) -> None:
        self.dom = dom

    def lookupByName(self, name: str) -> Guest:
        if self.dom is None or not self.dom.defined:
            raise libvirt.libvirtError(f"Domain not found: no domain with matching name '{name}'")
        return self.dom


class Session:
    def __init__(self, host: str, ran: list[tuple[str, list[str]]]) -> None:
        self.host, self.ran = host, ran

    def run(self, argv: list[str], check: bool = True) -> None:
        self.ran.append((self.host, argv))


class Provider(VmPlacementProvider):
    """The real delete, with each host's libvirt and SSH replaced by fakes."""

    def __init__(self, domains: dict[str, Guest | None]) -> None:
        super().__init__()
        self.domains = domains
        self.ran: list[tuple[str, list[str]]] = []

    def _libvirt(self, endpoint: Endpoint) -> Any:
        return Connection(self.domains.get(endpoint.name))

    def session(self, props: dict[str, Any], key: str = "host") -> Any:
        return Session(props[key]["name"], self.ran)


def _stored(**fields: Any) -> dict[str, Any]:
    """A placement's stored outputs, numbers as the engine hands them over (floats)."""
    return {
        "name": "blog",
        "host": OLD,
        "fleet": {"old": OLD, "new": NEW},
        "ip": "203.0.113.2",
        "vif": "vif0",
        "disks": [{"path": IMG, "size_mib": 64.0}],
        "uuid": "8c2b3f52-0000-4000-8000-000000000001",
        "running": True,
        "last_migration": None,
        **fields,
    }


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The delete's shutdown runs on a fake clock (no real waiting)."""
    fake = Clock()
    monkeypatch.setattr(
        removal, "shut_down", functools.partial(removal.shut_down, clock=fake, sleep=fake.sleep)
    )
    return fake


def test_by_default_a_removed_vm_is_released_running_and_untouched(
    clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    dom = Guest(clock)
    provider = Provider({"old": dom})
    provider.delete("blog", _stored())
    assert dom.calls == [] and dom.isActive() and dom.defined
    assert provider.ran == []
    assert capsys.readouterr().out == (
        "blog: released: still running and defined on old; glidepath no longer manages it\n"
    )


def test_a_stopped_vm_is_released_defined(clock: Clock, capsys: pytest.CaptureFixture[str]) -> None:
    dom = Guest(clock, running=False)
    Provider({"old": dom}).delete("blog", _stored(running=False))
    assert dom.calls == [] and dom.defined
    assert "blog: released: still defined (not running) on old" in capsys.readouterr().out


def test_a_state_from_before_on_remove_keeps_the_disks_of_the_vm_it_releases(
    clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    """Stored `delete_disks: true` without `on_remove`: released, and its disks stay."""
    dom = Guest(clock)
    provider = Provider({"old": dom})
    provider.delete("blog", _stored(delete_disks=True))
    assert dom.calls == [] and provider.ran == []
    assert "(its disks are kept: delete_disks needs on_remove: shutdown)" in (
        capsys.readouterr().out
    )


def test_shutdown_stops_it_by_acpi_then_undefines_it_keeping_the_disks(
    clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    dom = Guest(clock, stops_after=4.0)
    provider = Provider({"old": dom})
    provider.delete("blog", _stored(on_remove="shutdown", shutdown_timeout_s=60.0))
    assert dom.calls == ["shutdown", "undefine"]
    assert provider.ran == []
    out = capsys.readouterr().out
    assert "blog: shut down on old in 4.0 s (ACPI)" in out
    assert "blog: undefined on old (disks kept)" in out


def test_shutdown_with_delete_disks_removes_them_where_the_vm_was_found(
    clock: Clock,
) -> None:
    # The state says old; the VM was moved to new by hand: found there, removed there.
    dom = Guest(clock)
    provider = Provider({"old": None, "new": dom})
    provider.delete("blog", _stored(on_remove="shutdown", delete_disks=True))
    assert dom.calls == ["shutdown", "undefine"]
    assert provider.ran == [("new", ["rm", "-f", "--", IMG])]


def test_a_vm_that_does_not_stop_in_time_fails_the_delete_and_keeps_everything(
    clock: Clock,
) -> None:
    dom = Guest(clock, answers=None)
    provider = Provider({"old": dom})
    with pytest.raises(removal.ShutdownError, match=r"shutdown_timeout_s=5 s .* on old"):
        provider.delete(
            "blog", _stored(on_remove="shutdown", shutdown_timeout_s=5.0, delete_disks=True)
        )
    assert "destroy" not in dom.calls and "undefine" not in dom.calls
    assert dom.isActive() and dom.defined
    assert provider.ran == []  # the disks are untouched


def test_a_stopped_vm_with_shutdown_is_undefined_without_a_press(clock: Clock) -> None:
    dom = Guest(clock, running=False)
    Provider({"old": dom}).delete("blog", _stored(on_remove="shutdown", running=False))
    assert dom.calls == ["undefine"]


def test_a_vm_gone_from_every_host_is_already_removed(clock: Clock) -> None:
    provider = Provider({})
    provider.delete("blog", _stored(on_remove="shutdown", delete_disks=True))
    assert provider.ran == []


def test_a_change_of_on_remove_is_an_update_and_a_state_from_before_it_is_no_change() -> None:
    provider = VmPlacementProvider()
    news = dict(provider.check({}, _stored()).inputs)
    before = {k: v for k, v in news.items() if k not in ("on_remove", "shutdown_timeout_s")}
    assert provider.diff("blog", before, news).changes is False
    shutdown = {**news, "on_remove": "shutdown"}
    result = provider.diff("blog", news, shutdown)
    assert result.changes is True and not result.replaces


def test_an_update_of_on_remove_touches_nothing_and_says_what_a_removal_will_do(
    clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    dom = Guest(clock)
    provider = Provider({"old": dom})
    provider.update("blog", _stored(), _stored(on_remove="shutdown", shutdown_timeout_s=30.0))
    assert dom.calls == [] and provider.ran == []
    assert capsys.readouterr().out == (
        "blog: removing it from the stack shuts it down (ACPI, up to 30 s) and undefines it, "
        "its disks kept\n"
    )
