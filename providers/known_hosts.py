"""known_hosts lookups with the standard library, for the program.

The program reads known_hosts on every run: is every host's key there (a preview should
say so), and which key to pin for the command provider. Loading paramiko for that cost
each `pulumi up` about 0.1 s (bench/fixed_cost.py); the providers' SSH connections still
verify host keys with paramiko's own parser (providers/transport.py), the one that
decides. OpenSSH's format (sshd(8), SSH_KNOWN_HOSTS FILE FORMAT): `[marker] hostnames
keytype base64-key [comment]`, hostnames comma-separated, `[addr]:port` off port 22,
hashed as `|1|base64(salt)|base64(HMAC-SHA1(salt, name))`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct


class KnownHostsError(ValueError):
    """A line that is not `hostnames keytype base64-key`."""


def name_for(address: str, port: int) -> str:
    """How known_hosts names a host: `addr` on port 22, `[addr]:port` otherwise."""
    return address if port == 22 else f"[{address}]:{port}"


def keys_of(known_hosts: str, name: str) -> dict[str, str]:
    """keytype -> base64 key for `name` (hashed entries included), first entry per type.
    Markers (@cert-authority, @revoked) name no key to trust. Raises KnownHostsError on
    a line that is not known_hosts text."""
    found: dict[str, str] = {}
    for number, line in enumerate(known_hosts.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith(("#", "@")):
            continue
        if len(fields) < 3:
            raise KnownHostsError(f"line {number}: expected hostnames, keytype and key")
        names, keytype, key = fields[:3]
        _check_key(number, keytype, key)
        if any(_matches(number, entry, name) for entry in names.split(",")):
            found.setdefault(keytype, key)
    return found


def _matches(number: int, entry: str, name: str) -> bool:
    if not entry.startswith("|1|"):
        return entry == name
    try:
        salt, digest = (base64.b64decode(part, validate=True) for part in entry[3:].split("|"))
    except (ValueError, binascii.Error):
        raise KnownHostsError(f"line {number}: a hashed name that is not |1|salt|hash") from None
    return hmac.compare_digest(hmac.new(salt, name.encode(), hashlib.sha1).digest(), digest)


def _check_key(number: int, keytype: str, key: str) -> None:
    """The key is base64 of SSH's wire format, which starts with its own type name."""
    try:
        blob = base64.b64decode(key, validate=True)
        (length,) = struct.unpack(">I", blob[:4])
    except (binascii.Error, struct.error):
        raise KnownHostsError(f"line {number}: the key is not base64 of an SSH key") from None
    if blob[4 : 4 + length].decode(errors="replace") != keytype:
        raise KnownHostsError(f"line {number}: the key is not a {keytype} key")
