"""What providers ran, for tests that prove a second apply runs nothing."""

from __future__ import annotations

from providers import base


class StepLog:
    """The changing steps providers ran since the last `mark()` (providers.base.applied_log)."""

    def __init__(self) -> None:
        self.start = len(base.applied_log)

    def mark(self) -> None:
        self.start = len(base.applied_log)

    @property
    def steps(self) -> list[tuple[str, tuple[str, ...]]]:
        return base.applied_log[self.start :]
