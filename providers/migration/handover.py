"""The route handover while a VM migrates: its /32 moves from the source's tap to the
target's at the instant the source pauses (providers/plans/handover.py, its commands,
says why)."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any, NamedTuple

from providers.migration import log
from providers.plans import handover
from providers.transport import SshSession


class End(NamedTuple):
    """One end of a move, as the route handover sees it."""

    host: str
    ssh: SshSession
    ip: str
    vif: str


class RouteHandover:
    """Moves a migrating VM's /32 from the source's tap to the target's at the instant
    the source pauses.

    `hold` before the migration starts; `finish` after it ended, whatever the outcome:
    it routes the address where the VM runs and removes the hold.
    """

    def __init__(
        self,
        name: str,
        source: End,
        target: End,
    ) -> None:
        self._name = name
        self._source, self._target = source, target
        self._paused = threading.Event()
        self._stopped = threading.Event()
        self._handed = threading.Event()
        self._callback: int | None = None
        self._conn: Any = None
        self._thread: threading.Thread | None = None

    def hold(self, timeout_s: float) -> None:
        target = self._target
        target.ssh.run(handover.make_hold_dir())
        host_now = int(target.ssh.run(["date", "+%s"]).stdout.strip())
        content = handover.hold_until(host_now, timeout_s)
        target.ssh.write_file(handover.hold_path(target.vif), content, "0600")

    def watch(self, source_conn: Any, dom: Any) -> None:
        """Hand the route over when libvirt reports the source paused for the switch."""
        import libvirt

        def on_lifecycle(_conn: Any, _dom: Any, event: int, detail: int, _opaque: Any) -> None:
            # Runs in libvirt's event loop thread: note it and return.
            # MIGRATED: paused for the switch; POSTCOPY: paused as the VM switches to the
            # target before its memory is copied (post-copy): it runs there from then on.
            if event == libvirt.VIR_DOMAIN_EVENT_SUSPENDED and detail in (
                libvirt.VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED,
                libvirt.VIR_DOMAIN_EVENT_SUSPENDED_POSTCOPY,
            ):
                self._paused.set()

        self._conn = source_conn
        self._callback = source_conn.domainEventRegisterAny(
            dom, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, on_lifecycle, None
        )
        self._thread = threading.Thread(
            target=self._run, name=f"handover-{self._name}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._paused.wait(0.2):
            if self._stopped.is_set():
                return
        started = time.monotonic()
        # Both ends at once: which host receives the traffic depends on the upstream.
        away = threading.Thread(target=self._route_away, daemon=True)
        away.start()
        target = self._target
        try:
            target.ssh.run(handover.route_here(target.ip, target.vif))
            self._handed.set()
        except Exception as err:  # finish routes it once the move ended
            log(f"{self._name}: routing {target.ip} to {target.vif} on {target.host} failed: {err}")
        away.join(10)
        log(
            f"{self._name}: paused on {self._source.host}; {target.ip} routed to {target.host} "
            f"{(time.monotonic() - started) * 1000:.0f} ms later"
        )

    def _route_away(self) -> None:
        source = self._source
        with contextlib.suppress(Exception):  # the route may be gone with the tap already
            source.ssh.run(handover.route_away(source.ip, source.vif), check=False)

    def finish(self, moved: bool) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(15)
        if self._callback is not None:
            with contextlib.suppress(Exception):
                self._conn.domainEventDeregisterAny(self._callback)
        source, target = self._source, self._target
        with contextlib.suppress(Exception):
            target.ssh.run(handover.release(target.vif), check=False)
        if moved and not self._handed.is_set():
            # No pause event reached us (or its routing failed): route it now.
            log(f"{self._name}: routing {target.ip} to {target.vif} on {target.host} now")
            target.ssh.run(handover.route_here(target.ip, target.vif))
        elif not moved and self._paused.is_set():
            # The VM runs on the source again (job.recover): its route comes back.
            result = source.ssh.run(handover.route_here(source.ip, source.vif), check=False)
            if not result.ok:
                log(
                    f"{self._name}: could not route {source.ip} to {source.vif} "
                    f"on {source.host} again"
                )
