"""Provider tests run the providers' CRUD directly against lab hosts over real SSH.

They need the lab up (`python -m lab up`); the session-scoped `lab` fixture brings it up
when it is not. Each provider gets the lab's key and known_hosts the way `configure`
would give them from the stack config.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lab import topology
from providers import transport
from providers.transport import SshCredentials
from tests.support.steps import StepLog


@pytest.fixture(scope="session")
def lab_credentials(lab: Any) -> SshCredentials:
    return SshCredentials(
        private_key=topology.CLIENT_KEY.read_text(),
        known_hosts=topology.KNOWN_HOSTS.read_text(),
    )


@pytest.fixture(scope="session")
def lab_endpoint(lab: Any) -> Callable[[str], dict[str, Any]]:
    """lab_endpoint("old") -> the `host` input for that lab host."""

    def endpoint(name: str) -> dict[str, Any]:
        address = str(topology.hypervisor(name).address)
        return {"name": name, "address": address, "port": 22, "user": "root"}

    return endpoint


@pytest.fixture
def applied() -> StepLog:
    return StepLog()


@pytest.fixture(scope="session", autouse=True)
def _close_sessions() -> Iterator[None]:
    yield
    transport.close_all()
