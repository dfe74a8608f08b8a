"""Shared host artifacts: who holds them, and the plans to claim and let go."""

from __future__ import annotations

import pytest

from providers import owners, validate
from providers.transport import CommandResult

pytestmark = [pytest.mark.unit]


def _found(stdout: str, status: int = 0, stderr: str = "") -> CommandResult:
    return CommandResult(("find",), status, stdout, stderr)


def test_owners_are_the_files_and_a_missing_directory_has_none() -> None:
    assert owners.process(_found("glidepath.lab\nglidepath.bench\n")) == {
        "glidepath.lab",
        "glidepath.bench",
    }
    missing = "find: '/var/lib/glidepath/owners/x': No such file or directory\n"
    assert owners.process(_found("", 1, missing)) == set()
    with pytest.raises(RuntimeError, match="Permission denied"):
        owners.process(_found("", 1, "find: x: Permission denied"))


def test_claim_and_release_touch_only_the_owners_own_file() -> None:
    held = {"glidepath.bench"}
    mine = "/var/lib/glidepath/owners/vif-route/glidepath.lab"
    claim = owners.plan_claim("vif-route", "glidepath.lab", held)
    assert claim.commands == (("install", "-D", "-m", "0644", "/dev/null", mine),)
    assert not owners.plan_claim("vif-route", "glidepath.lab", held | {"glidepath.lab"})
    release = owners.plan_release("vif-route", "glidepath.lab", held | {"glidepath.lab"})
    assert release.commands == (("rm", "-f", "--", mine),)
    assert not owners.plan_release("vif-route", "glidepath.lab", held)
    assert owners.others("glidepath.lab", held | {"glidepath.lab"}) == ["glidepath.bench"]
    # The last one takes the empty directory along, never a directory that is not empty.
    last = owners.plan_release("vif-route", "glidepath.lab", {"glidepath.lab"})
    assert last.commands == (
        ("rm", "-f", "--", mine),
        ("rmdir", "--ignore-fail-on-non-empty", "--", "/var/lib/glidepath/owners/vif-route"),
    )


@pytest.mark.parametrize("name", ["", "../etc", "a/b", "a b", "-x", "$(reboot)", "a..b"])
def test_owner_names_are_plain_file_names(name: str) -> None:
    with pytest.raises(validate.Invalid):
        owners.parse_owner(name)
