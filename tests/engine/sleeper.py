"""A test-only dynamic provider that sleeps and prints, to probe the engine's limits:
how long one call may run, whether printed lines stream out while it runs, and how
many calls run at once."""

from __future__ import annotations

import time
from typing import Any

from pulumi.dynamic import CreateResult, DiffResult, Resource, ResourceProvider, UpdateResult


def _sleep(name: str, seconds: float, every: float) -> dict[str, float]:
    # The duration on the monotonic clock: this machine's wall clock is adjusted now and
    # then (a 240 s sleep by time.time() once ended 5 s early). The stamps are wall time,
    # comparable between the provider processes.
    start, clock = time.time(), time.monotonic()
    next_line = clock
    while (now := time.monotonic()) < clock + seconds:
        if now >= next_line:
            print(f"sleeper {name}: {now - clock:.0f}s of {seconds:.0f}s", flush=True)
            next_line += every
        time.sleep(min(0.2, clock + seconds - now))
    return {"started": start, "finished": start + (time.monotonic() - clock)}


class SleeperProvider(ResourceProvider):
    def create(self, props: dict[str, Any]) -> CreateResult:
        times = _sleep(props["label"], props["seconds"], props["print_every"])
        return CreateResult(props["label"], {**props, **times})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return DiffResult(changes=olds.get("seconds") != news.get("seconds"))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        times = _sleep(news["label"], news["seconds"], news["print_every"])
        return UpdateResult({**news, **times})


class Sleeper(Resource, module="test", name="Sleeper"):
    def __init__(self, name: str, seconds: float, print_every: float = 5.0) -> None:
        super().__init__(
            SleeperProvider(),
            name,
            {
                "label": name,
                "seconds": seconds,
                "print_every": print_every,
                "started": None,
                "finished": None,
            },
        )
