"""Hostile names and paths: `quote_argv` hands a shell exactly the argv, and the validators
let through only names that need no quoting at all (property tests, hypothesis).

The shell here is the real /bin/sh; tests/engine/test_transport_quoting.py does the same
through the real transport to a real sshd.
"""

from __future__ import annotations

import copy
import functools
import re
import shlex
import string
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from components.config import ConfigError, parse_config
from providers import validate
from providers.plans import PlanError
from providers.plans import vif_route_script as vif_route_plans
from providers.schema.mangle_mark import owned_comment
from providers.transport import quote_argv
from tests.unit.test_config import GOOD

pytestmark = [pytest.mark.unit]

#: What a shell reads into a word: quotes, expansions, separators, globs, whitespace.
SHELL_SPECIAL = "'\"`$\\;&|<>(){}[]*?~#!=%^, \t\n\r\x0b\x0c"
#: Text a shell could misread, mixed with ordinary characters and any other Unicode
#: (argv cannot carry NUL; lone surrogates cannot be encoded for exec).
hostile_text = st.text(
    alphabet=st.one_of(
        st.sampled_from(SHELL_SPECIAL + "abc019-_./+:@é€\u202e\u2028\u00a0"),
        st.characters(exclude_characters="\x00", exclude_categories=["Cs"]),
    ),
    max_size=40,
)
#: Mostly valid interface names with the odd hostile character put in or appended.
near_names = st.builds(
    lambda base, junk, at: base[:at] + junk + base[at:],
    st.from_regex(r"[A-Za-z][A-Za-z0-9_.-]{0,16}", fullmatch=True),
    st.one_of(st.just(""), st.sampled_from(list(SHELL_SPECIAL)), st.just("+")),
    st.integers(0, 20),
)
CANARY = "glidepath-pwned"
CANARY_ARGS = [
    f"$(touch {CANARY})",
    f"`touch {CANARY}`",
    f"; touch {CANARY}",
    f"' ; touch {CANARY} ; '",
    f'" ; touch {CANARY} ; "',
    f"\n touch {CANARY}",
    f"&& touch {CANARY}",
    f"| touch {CANARY}",
    f"> {CANARY}",
]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("quoting")


def _through_sh(argv: list[str], cwd: Path) -> list[str]:
    """What /bin/sh makes of `printf '%s\\0' <quoted argv>`: the words it got."""
    command = "printf '%s\\0' " + quote_argv(argv)
    result = subprocess.run(
        ["/bin/sh", "-c", command], cwd=cwd, capture_output=True, timeout=10, check=True
    )
    return result.stdout.decode().split("\0")[:-1]


@settings(max_examples=400, deadline=None)
@given(argv=st.lists(hostile_text, min_size=1, max_size=6))
@example(argv=CANARY_ARGS)
@example(argv=["", " ", "'", '"', "\\", "$HOME", "*", "~", "-n", "--", "%s\\0"])
def test_a_shell_gets_back_exactly_the_argv(argv: list[str], sandbox: Path) -> None:
    assert _through_sh(argv, sandbox) == argv
    assert not (sandbox / CANARY).exists()


def test_no_argv_quote_argv_refuses() -> None:
    with pytest.raises(ValueError, match="empty"):
        quote_argv([])
    with pytest.raises(ValueError, match="NUL"):
        quote_argv(["a\x00b"])


# --- validators: whatever they accept needs no quoting -------------------------------

IFNAME_CHARS = set(string.ascii_letters + string.digits + "_.-")


def _strict_interface_name(value: str, wildcard: bool) -> bool:
    """The rule, written out: 1-15 ASCII characters, a letter first, then letters,
    digits, '_', '.', '-' (with a wildcard, a final '+' in place of the 15th)."""
    body = value[:-1] if wildcard and value.endswith("+") else value
    return (
        1 <= len(value) <= 15
        and len(body) >= 1
        and body[0] in string.ascii_letters
        and set(body) <= IFNAME_CHARS
    )


def _accepted(parse: Callable[[Any], Any], value: Any) -> Any:
    try:
        return parse(value)
    except validate.Invalid:
        return None


def _needs_no_quoting(value: str) -> bool:
    return shlex.quote(value) == value


@settings(max_examples=500, deadline=None)
@given(value=st.one_of(hostile_text, near_names))
@example(value="vif0\n")  # `$` in a Python regex also matches before a final newline
@example(value="vif0+\n")
@example(value="vif0123456789abc")
def test_an_accepted_interface_name_obeys_the_strict_rule(value: str) -> None:
    for wildcard in (False, True):
        accepted = _accepted(functools.partial(validate.interface_name, wildcard=wildcard), value)
        assert (accepted is not None) == _strict_interface_name(value, wildcard), value
        if accepted is not None:
            assert accepted == value
            assert _needs_no_quoting(accepted)
            assert len(accepted.encode()) <= 15


@settings(max_examples=500, deadline=None)
@given(value=st.one_of(hostile_text, near_names, st.from_regex(r"/[a-z/.]{0,20}", fullmatch=True)))
@example(value="blog\n")
@example(value="/var/lib/libvirt/images/blog.img\n")
@example(value="/var/lib/../../etc/shadow")
@example(value="net.ipv4.ip_forward;reboot")
def test_every_accepted_name_or_path_needs_no_quoting(value: str) -> None:
    for parse in (
        validate.name,
        validate.table_name,
        validate.absolute_path,
        validate.sysctl_key,
    ):
        accepted = _accepted(parse, value)
        if accepted is not None:
            assert _needs_no_quoting(accepted), (parse.__name__, value)
            assert "\n" not in accepted
    path = _accepted(validate.absolute_path, value)
    if path is not None:
        assert path.startswith("/") and ".." not in path.split("/")


def _config_with(field: str, value: str) -> dict[str, Any]:
    raw = copy.deepcopy(GOOD)
    blog = raw["vms"]["blog"]
    if field == "vif":
        blog["vif"] = value
    elif field == "disk":
        blog["disks"] = [{"path": value, "size_mib": 64}]
    elif field == "kernel":
        blog["boot"] = {"kernel": value}
    elif field == "uplink":
        raw["hosts"]["old"]["uplink"] = value
    elif field == "vm":
        raw["vms"] = {value: blog}
    elif field == "host":
        raw["hosts"][value] = raw["hosts"].pop("old")
        raw["links"][0]["hosts"][0] = value
        blog["host"] = value
    return raw


@settings(max_examples=300, deadline=None)
@given(
    field=st.sampled_from(["vif", "disk", "kernel", "uplink", "vm", "host"]),
    value=st.one_of(hostile_text, near_names),
)
@example(field="vif", value="vif0;reboot")
@example(field="disk", value="/var/lib/libvirt/images/$(reboot).img")
@example(field="host", value="old\n")
def test_the_stack_config_takes_no_name_a_shell_would_read(field: str, value: str) -> None:
    """A hostile name is refused at the config (naming the field: the preview fails before
    any resource exists), or it is one that needs no quoting anywhere."""
    try:
        config = parse_config(_config_with(field, value))
    except ConfigError as err:
        assert err.problems and all(p.startswith("glidepath:") for p in err.problems)
        return
    vm = next(iter(config.vms.values()))
    names = [
        vm.name,
        vm.vif,
        *(d.path for d in vm.disks),
        *(str(value) for value in vm.boot.values()),
        *config.hosts,
        *(h.uplink for h in config.hosts.values()),
    ]
    assert all(_needs_no_quoting(name) for name in names), names
    assert all(re.fullmatch(r"[\x21-\x7e]+", name) for name in names), names


@pytest.mark.parametrize(
    ("parse", "value"),
    [
        (owned_comment, "glidepath net0"),
        (vif_route_plans.check_path, "/etc/libvirt/scripts/vif-route"),
        (validate.interface_name, "vif0"),
        (validate.name, "blog"),
    ],
)
def test_a_final_newline_is_refused(parse: Callable[[str], str], value: str) -> None:
    # `$` in a Python regex also matches before a final newline; the checks fullmatch.
    assert parse(value) == value
    with pytest.raises((validate.Invalid, PlanError)):
        parse(value + "\n")
