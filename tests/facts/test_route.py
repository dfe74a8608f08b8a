"""`ip -4 -j route show table T` parsing, from output captured on the lab host `new`
(iproute2 6.1) with these routes added by hand to table 237 (and flushed again):

    ip route add default via 198.18.2.1 table 237
    ip route add 203.0.113.0/29 via 198.18.2.1 dev br0 table 237 metric 300
    ip route add 203.0.113.0/29 dev br0 table 237 metric 100
    ip route add 203.0.113.5 dev br0 table 237
    ip route add blackhole 198.51.100.0/24 table 237 metric 5
"""

from __future__ import annotations

from pathlib import Path

import pytest

from providers.facts import route as facts
from providers.transport import CommandResult

pytestmark = [pytest.mark.unit]

DATA = Path(__file__).parent / "data"


def _result(name: str, status: int = 0, stderr: str = "") -> CommandResult:
    return CommandResult(("ip",), status, (DATA / name).read_text(), stderr)


def test_table_with_every_kind_of_route() -> None:
    routes = facts.process(_result("ip_route_show_table_237.json"))
    assert routes == [
        {
            "dst": "default",
            "type": "unicast",
            "via": "198.18.2.1",
            "dev": "br0",
            "metric": 0,
            "other": {},
        },
        {
            "dst": "198.51.100.0/24",
            "type": "blackhole",
            "via": None,
            "dev": None,
            "metric": 5,
            "other": {},
        },
        {
            "dst": "203.0.113.0/29",
            "type": "unicast",
            "via": None,
            "dev": "br0",
            "metric": 100,
            "other": {},
        },
        {
            "dst": "203.0.113.0/29",
            "type": "unicast",
            "via": "198.18.2.1",
            "dev": "br0",
            "metric": 300,
            "other": {},
        },
        # iproute2 prints a host route without /32; the fact has it, like the input.
        {
            "dst": "203.0.113.5/32",
            "type": "unicast",
            "via": None,
            "dev": "br0",
            "metric": 0,
            "other": {},
        },
    ]


def test_main_table_kernel_route_keeps_prefsrc_apart() -> None:
    routes = facts.process(_result("ip_route_show_table_main.json"))
    assert routes[0]["dst"] == "default" and routes[0]["via"] == "198.18.2.1"
    assert routes[1]["other"] == {"prefsrc": "198.18.2.2"}


def test_table_that_does_not_exist_yet_is_empty() -> None:
    stderr = (DATA / "ip_route_show_table_missing.stderr.txt").read_text()
    assert stderr.startswith("Error: ipv4: FIB table does not exist.")
    # iproute2 exits 2 and leaves a lone "[" on stdout.
    assert facts.process(_result("ip_route_show_table_missing.json", 2, stderr)) == []


def test_other_failures_raise() -> None:
    with pytest.raises(RuntimeError, match="table id value is invalid"):
        facts.process(
            CommandResult(
                ("ip",), 255, "", 'Error: argument "x" is wrong: table id value is invalid'
            )
        )


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("default", "default"),
        ("0.0.0.0/0", "default"),
        ("203.0.113.5", "203.0.113.5/32"),
        ("203.0.113.0/29", "203.0.113.0/29"),
    ],
)
def test_destination_spellings(spelling: str, canonical: str) -> None:
    assert facts.canonical_dst(spelling) == canonical
