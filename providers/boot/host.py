"""Applying the persisted forms on a host (the plans are in `persist`): what each
host-network provider calls after it applied an artifact (`keep`) and after it removed
one (`forget`)."""

from __future__ import annotations

import threading
from typing import Any

from providers.base import apply
from providers.boot import persist
from providers.transport import SshSession

# The boot step is checked once per host and provider process: every resource of an `up`
# keeps a record, and the script (~10 KiB) need not be read back for each of them.
_installed: set[str] = set()
_installed_lock = threading.Lock()


def has_systemd(session: SshSession) -> bool:
    return session.run(["test", "-d", persist.SYSTEMD_DIR], check=False).ok


def install(session: SshSession) -> None:
    """The boot step and (systemd) its units, as `persist.plan_restorer` says."""
    key = f"{session.endpoint.address}:{session.endpoint.port}"
    with _installed_lock:
        if key in _installed:
            return
        systemd = has_systemd(session)
        apply(
            session,
            persist.plan_restorer(
                session.read_file(persist.RESTORER),
                systemd,
                session.read_file(persist.RESTORE_UNIT) if systemd else None,
                session.read_file(persist.KEEPER_UNIT) if systemd else None,
            ),
        )
        _installed.add(key)


def keep(session: SshSession, kind: str, name: str, fields: dict[str, Any]) -> None:
    """Make the host restore this artifact at boot: its record, and the boot step."""
    install(session)
    content = persist.render(kind, fields)
    apply(session, persist.plan_record(name, content, session.read_file(persist.record_path(name))))


def forget(session: SshSession, name: str) -> None:
    """The artifact is gone: its record goes too."""
    present = session.read_file(persist.record_path(name)) is not None
    apply(session, persist.plan_forget(name, present))
