"""`manual`: glidepath switches nothing; a person moves the prefix (a support ticket, a
web console). glidepath waits for the first packet that arrives directly."""

from __future__ import annotations


class Manual:
    kind = "manual"

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def current(self) -> str | None:
        return None  # nobody to ask

    def switch(self, address: str) -> None:
        print(
            f"cutover (manual): route {self.prefix} to {address} at your provider now; "
            "glidepath waits for the first packet that arrives there directly",
            flush=True,
        )

    def nudge(self, addresses: list[str]) -> None:
        pass  # a person switches; real traffic is the evidence

    def unreachable(self, addresses: list[str]) -> list[str]:
        return []
