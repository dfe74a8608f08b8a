"""The host bootstrap's command line: one constant script, the host's values as quoted
positional arguments, the sshd config path validated; and the pinned host key."""

from __future__ import annotations

import shlex

import paramiko
import pytest

from providers import transport, validate
from providers.plans import host_bootstrap

pytestmark = [pytest.mark.unit]


def test_the_command_is_the_script_with_the_hosts_values_as_arguments() -> None:
    argv = shlex.split(host_bootstrap.command("/var/lib/glidepath-lab/hosts/old/sshd_config"))
    assert argv[:3] == ["sh", "-c", host_bootstrap.SCRIPT]
    assert argv[4:7] == [
        "/var/lib/glidepath-lab/hosts/old/sshd_config",
        host_bootstrap.DROP_IN,
        " ".join(host_bootstrap.DIRECTORIES),
    ]
    assert argv[8:] == list(host_bootstrap.PACKAGES)


@pytest.mark.parametrize("path", ["etc/ssh/sshd_config", "/etc/ssh/$(reboot)", "/etc/../x", ""])
def test_a_bad_sshd_config_path_is_refused(path: str) -> None:
    with pytest.raises(validate.Invalid):
        host_bootstrap.command(path)


def test_the_pinned_host_key_prefers_ed25519_and_knows_ports() -> None:
    ecdsa = paramiko.ECDSAKey.generate()
    ed25519 = "AAAAC3NzaC1lZDI1NTE5AAAAIJ7o6BdY0cjD4bSo+9nmUQgUQUo8kcHYvsUAFFuRcoaJ"
    known = (
        f"198.18.1.2 {ecdsa.get_name()} {ecdsa.get_base64()}\n"
        f"198.18.1.2 ssh-ed25519 {ed25519}\n"
        f"[198.18.2.2]:2222 {ecdsa.get_name()} {ecdsa.get_base64()}\n"
    )
    assert transport.host_key_line(known, "198.18.1.2", 22) == f"ssh-ed25519 {ed25519}"
    assert transport.host_key_line(known, "198.18.2.2", 2222) == (
        f"{ecdsa.get_name()} {ecdsa.get_base64()}"
    )
    assert transport.host_key_line(known, "198.18.2.2", 22) is None
