"""The program's known_hosts lookups (stdlib) agree with paramiko's, which the providers'
connections verify with."""

from __future__ import annotations

import paramiko
import pytest

from providers import known_hosts
from providers.known_hosts import KnownHostsError

pytestmark = pytest.mark.unit

ED25519 = "AAAAC3NzaC1lZDI1NTE5AAAAIJ7o6BdY0cjD4bSo+9nmUQgUQUo8kcHYvsUAFFuRcoaJ"


def test_plain_hashed_and_ported_names_are_found_as_paramiko_finds_them() -> None:
    ecdsa = paramiko.ECDSAKey.generate()
    hashed = paramiko.HostKeys.hash_host("198.18.3.2")
    text = (
        "# a comment\n\n"
        f"198.18.1.2,old {ecdsa.get_name()} {ecdsa.get_base64()} root@old\n"
        f"[198.18.2.2]:2222 ssh-ed25519 {ED25519}\n"
        f"{hashed} ssh-ed25519 {ED25519}\n"
    )
    parsed = paramiko.HostKeys()
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        entry = paramiko.hostkeys.HostKeyEntry.from_line(line)
        if entry is not None:
            for name in entry.hostnames:
                parsed.add(name, entry.key.get_name(), entry.key)
    for name in ("198.18.1.2", "old", "[198.18.2.2]:2222", "198.18.3.2", "198.18.2.2", "x"):
        ours = known_hosts.keys_of(text, name)
        theirs = parsed.lookup(name)
        assert ours == ({k: v.get_base64() for k, v in theirs.items()} if theirs else {}), name


def test_the_name_has_the_port_only_off_22() -> None:
    assert known_hosts.name_for("198.18.1.2", 22) == "198.18.1.2"
    assert known_hosts.name_for("198.18.1.2", 2222) == "[198.18.1.2]:2222"


def test_a_marker_line_names_no_key_to_trust() -> None:
    text = f"@revoked 198.18.1.2 ssh-ed25519 {ED25519}\n"
    assert known_hosts.keys_of(text, "198.18.1.2") == {}


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("198.18.1.2 ssh-ed25519", "expected hostnames, keytype and key"),
        ("198.18.1.2 ssh-ed25519 not-base64!", "not base64 of an SSH key"),
        (f"198.18.1.2 ssh-rsa {ED25519}", "not a ssh-rsa key"),
        (f"|1|abc ssh-ed25519 {ED25519}", "hashed name"),
    ],
)
def test_text_that_is_not_known_hosts_is_refused_with_its_line(line: str, reason: str) -> None:
    with pytest.raises(KnownHostsError, match=f"line 2: .*{reason}"):
        known_hosts.keys_of(f"# first\n{line}\n", "198.18.1.2")
