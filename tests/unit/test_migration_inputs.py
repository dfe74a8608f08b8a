"""VmPlacement's input fields (providers/migration/inputs.py): defaults filled in, a wrong
field named."""

from __future__ import annotations

from typing import Any

import pytest

from providers.migration import inputs
from providers.validate import Invalid

pytestmark = [pytest.mark.unit]


def test_migration_settings_get_their_defaults() -> None:
    assert inputs.parse_migration({}) == {
        "max_downtime_ms": 100,
        "bandwidth_mib_s": 0,
        "auto_converge": True,
        "timeout_s": 600,
    }


def test_boot_keeps_what_is_given() -> None:
    assert inputs.parse_boot({"kernel": "/boot/vmlinuz", "cmdline": "console=ttyS0"}) == {
        "kernel": "/boot/vmlinuz",
        "cmdline": "console=ttyS0",
    }
    assert inputs.parse_boot({}) == {}


def test_disks_are_canonical() -> None:
    assert inputs.parse_disks([{"path": "/d.img", "size_mib": "64"}]) == [
        {"path": "/d.img", "size_mib": 64}
    ]


@pytest.mark.parametrize(
    ("parse", "value", "message"),
    [
        (inputs.parse_disks, {"path": "/d.img"}, "must be a list"),
        (inputs.parse_disks, ["/d.img"], "each disk is"),
        (
            inputs.parse_disks,
            [{"path": "/d.img", "size_mib": 1}, {"path": "/d.img", "size_mib": 2}],
            "two disks share a path",
        ),
        (inputs.parse_boot, {"cmdline": "a\nb"}, "one line"),
        (inputs.parse_migration, [], "must be a mapping"),
        (inputs.parse_migration, {"timeout_s": 0}, "from 1 to 86400, got 0"),
        (inputs.parse_fleet, [], "must map host names"),
        (inputs.domain_type, "xen", "'kvm' or 'qemu'"),
    ],
)
def test_a_wrong_field_is_refused(parse: Any, value: Any, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        parse(value)
