"""The real transport against a real sshd (a namespace of this test's own): hostile argv
arrives intact, and a host whose key is unknown or changed is refused before any command.

sshd logs at VERBOSE to a file, so each test can say what reached the host: a connection
("Connection from"), an authenticated session ("Accepted publickey"), or nothing.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from providers import transport
from providers.sysctl import SysctlProvider
from providers.transport import Endpoint, HostKeyError, SshCredentials, SshSession
from tests.support.netns_sshd import SshHost, sshd_netns
from tests.unit.test_quoting import CANARY, CANARY_ARGS, hostile_text

pytestmark = [pytest.mark.engine]

CONNECTION = "Connection from "
ACCEPTED = "Accepted publickey"


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshHost]:
    with sshd_netns(tmp_path_factory.mktemp("transport-ssh"), log_level="VERBOSE") as host:
        yield host


@pytest.fixture(scope="module")
def session(sshd: SshHost) -> Iterator[SshSession]:
    credentials = SshCredentials(sshd.private_key, sshd.known_hosts)
    ssh = SshSession(Endpoint("gpt", sshd.address), credentials)
    yield ssh
    ssh.close()


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The namespace shares this machine's filesystem: the remote command runs in here.
    return tmp_path_factory.mktemp("transport-sandbox")


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(argv=st.lists(hostile_text, min_size=1, max_size=5))
@example(argv=CANARY_ARGS)
@example(argv=["", " ", "'", '"', "\\", "$HOME", "*", "~", "-n", "--", "%s\\0", "é€\u202e"])
def test_hostile_argv_reaches_the_host_intact(
    argv: list[str], session: SshSession, sandbox: Path
) -> None:
    # The remote login shell splits quote_argv's string; printf shows the words it got.
    result = session.run(["env", "-C", str(sandbox), "printf", "%s\\0", *argv])
    assert result.stdout.split("\0")[:-1] == argv
    assert not (sandbox / CANARY).exists()


def test_one_connection_carries_every_command(sshd: SshHost, session: SshSession) -> None:
    session.run(["true"])
    assert session.connections_opened == 1
    assert sshd.log().count(ACCEPTED) == 1


# --- host keys ---------------------------------------------------------------------


def _other_host_key(tmp_path: Path) -> str:
    key = tmp_path / "other_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30
    )
    keytype, body = key.with_suffix(".pub").read_text().split()[:2]
    return f"{keytype} {body}"


def _provider(sshd: SshHost, known_hosts: str) -> SysctlProvider:
    transport.close_all()  # no session cached from another test's credentials
    provider = SysctlProvider()
    provider.use_credentials(SshCredentials(sshd.private_key, known_hosts))
    return provider


PROPS = {"key": "net.ipv4.ip_forward", "value": "1"}


def _read(provider: SysctlProvider, sshd: SshHost) -> None:
    provider.read("x", {**PROPS, "host": {"name": "gpt", "address": sshd.address}})


def test_an_unknown_host_key_is_refused_before_connecting(sshd: SshHost, tmp_path: Path) -> None:
    # known_hosts holds keys, just none for this host.
    known = f"192.0.2.7 {_other_host_key(tmp_path)}\n"
    provider = _provider(sshd, known)
    before = sshd.log()
    with pytest.raises(HostKeyError) as raised:
        _read(provider, sshd)
    message = str(raised.value)
    assert f"no host key for {sshd.address} in glidepath:ssh.known_hosts" in message
    assert "ssh-keyscan" in message
    assert sshd.private_key.splitlines()[1] not in message
    assert CONNECTION not in sshd.log()[len(before) :]  # refused before any connection


def test_a_changed_host_key_is_refused_before_authenticating(sshd: SshHost, tmp_path: Path) -> None:
    # known_hosts names this host, with another key: what a reinstalled host, or a host
    # in the middle, looks like.
    known = f"{sshd.address} {_other_host_key(tmp_path)}\n"
    provider = _provider(sshd, known)
    before = sshd.log()
    with pytest.raises(HostKeyError) as raised:
        _read(provider, sshd)
    message = str(raised.value)
    assert "host key CHANGED" in message
    assert "refusing to connect" in message
    assert "update glidepath:ssh.known_hosts" in message
    new_log = sshd.log()[len(before) :]
    assert CONNECTION in new_log  # the key exchange happened: that is where it is seen
    assert ACCEPTED not in new_log  # and nothing authenticated, so no command ran


def test_the_right_host_key_is_accepted(sshd: SshHost) -> None:
    # The control for the two refusals: the same provider call with the real key works.
    provider = _provider(sshd, sshd.known_hosts)
    before = sshd.log()
    _read(provider, sshd)
    transport.close_all()
    assert ACCEPTED in sshd.log()[len(before) :]
