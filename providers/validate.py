"""Input validation shared by every provider's `check`: parse, canonicalise, or say why not.

Each validator returns the canonical value or raises `Invalid` with a message; `Checker`
collects those per field so `check` can return CheckFailures naming every bad field at
once, and nothing reaches a host.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, TypeVar

T = TypeVar("T")

# Linux accepts up to 15 bytes and almost any character; we accept the conservative set
# that iproute2, iptables and libvirt all take without quoting surprises.
_IFNAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,14}$")
_IFNAME_WILDCARD = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,13}\+$")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")
_SYSCTL_KEY = re.compile(r"^[a-z][a-z0-9_]*(\.[A-Za-z0-9_-]+)+$")
_FILE_PATH = re.compile(r"^(/[A-Za-z0-9_.-]+)+$")


class Invalid(ValueError):
    """A value that cannot be used; the message says what is expected."""


def is_unknown(value: Any) -> bool:
    """True for values not known until `up` (the engine's preview sentinel)."""
    from pulumi.runtime import rpc

    return bool(value == rpc.UNKNOWN)


def has_unknown(value: Any) -> bool:
    """True where `value`, or anything in it (keys too), is not known until `up`."""
    if isinstance(value, dict):
        return any(has_unknown(k) or has_unknown(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(has_unknown(item) for item in value)
    return is_unknown(value)


def interface_name(value: Any, *, wildcard: bool = False) -> str:
    if not isinstance(value, str):
        raise Invalid(f"must be an interface name, got {value!r}")
    if wildcard and _IFNAME_WILDCARD.fullmatch(value):
        return value
    if not _IFNAME.fullmatch(value):
        suffix = " (or a prefix ending in '+')" if wildcard else ""
        raise Invalid(
            f"{value!r} is not an interface name: 1-15 characters, a letter first, "
            f"then letters, digits, '_', '.', '-'{suffix}"
        )
    return value


def name(value: Any, what: str = "name") -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise Invalid(
            f"{value!r} is not a valid {what}: a letter, then letters, digits, '_' or '-' "
            "(at most 63)"
        )
    return value


def address(value: Any) -> str:
    try:
        return str(ipaddress.ip_address(str(value).strip()))
    except ValueError as err:
        raise Invalid(f"{value!r} is not an IP address") from err


def ipv4_address(value: Any) -> str:
    text = address(value)
    if ipaddress.ip_address(text).version != 4:
        raise Invalid(f"{text} is IPv6; glidepath routes IPv4 addresses")
    return text


def interface_address(value: Any) -> str:
    """An address with its prefix length, as on an interface: 198.18.100.1/24."""
    try:
        iface = ipaddress.ip_interface(str(value).strip())
    except ValueError as err:
        raise Invalid(f"{value!r} is not an address with a prefix length (a.b.c.d/n)") from err
    if "/" not in str(value):
        raise Invalid(f"{value!r} needs a prefix length (a.b.c.d/n)")
    return str(iface)


def tunnel_address(value: Any) -> str:
    """A tunnel end: an IPv4 address with room for the peer in its prefix."""
    canonical = interface_address(value)
    iface = ipaddress.ip_interface(canonical)
    if iface.version != 4:
        raise Invalid(f"{value!r}: tunnel addresses are IPv4 (a.b.c.d/n)")
    if iface.network.prefixlen == 32:
        raise Invalid(f"{value!r}: a /32 leaves no room for the peer's address")
    if iface.network.prefixlen <= 30 and iface.ip in (
        iface.network.network_address,
        iface.network.broadcast_address,
    ):
        raise Invalid(f"{value!r} is the network or broadcast address of its prefix")
    return canonical


def prefix(value: Any) -> str:
    """A network prefix; host bits must be zero (203.0.113.0/29, not 203.0.113.1/29)."""
    try:
        return str(ipaddress.ip_network(str(value).strip(), strict=True))
    except ValueError as err:
        raise Invalid(f"{value!r} is not a network prefix with zero host bits") from err


def ipv4_prefix(value: Any) -> str:
    text = prefix(value)
    if ipaddress.ip_network(text).version != 4:
        raise Invalid(f"{text} is IPv6; glidepath routes IPv4 prefixes (a.b.c.d/n)")
    return text


def route_destination(value: Any) -> str:
    if str(value).strip() == "default":
        return "default"
    return prefix(value)


def absolute_path(value: Any) -> str:
    """An absolute path without '..', whitespace or shell-special characters."""
    if not isinstance(value, str) or not re.fullmatch(r"/[A-Za-z0-9_.,+=@/-]{0,4095}", value):
        raise Invalid(f"{value!r} is not an absolute path of plain characters")
    parts = value.split("/")
    if ".." in parts or "." in parts or "//" in value:
        raise Invalid(f"{value!r} must not contain '.', '..' or '//' components")
    return value.rstrip("/") or "/"


def file_path(value: Any) -> str:
    """A file glidepath writes: absolute, plain components only, none of them '.' or '..'."""
    if (
        not isinstance(value, str)
        or not _FILE_PATH.fullmatch(value)
        or {".", ".."} & set(value.split("/"))
    ):
        raise Invalid(
            f"{value!r} is not an absolute file path of plain components "
            "(letters, digits, '_', '.', '-'; no '..')"
        )
    return value


_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
#: libvirt's CPU modes, or a named model (Skylake-Server-IBRS, EPYC, ...).
CPU_MODES = ("host-passthrough", "host-model")
_CPU_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def mac(value: Any) -> str:
    """A unicast MAC address, written lower case with colons."""
    text = value.lower() if isinstance(value, str) else None
    if text is None or not _MAC.fullmatch(text):
        raise Invalid(f"{value!r} is not a MAC address (52:54:00:12:34:56)")
    if int(text[:2], 16) & 1:
        raise Invalid(f"{value!r} is a multicast address: a NIC needs a unicast one")
    return text


def cpu_model(value: Any) -> str:
    """host-passthrough, host-model, or a CPU model name as libvirt lists them."""
    if not isinstance(value, str) or not _CPU_MODEL.fullmatch(value):
        raise Invalid(
            f"{value!r}: use host-passthrough, host-model or a model name "
            "(`virsh cpu-models x86_64`)"
        )
    return value


def boolean(value: Any) -> bool:
    # bool("false") is True: a quoted "false" must not turn a switch on.
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise Invalid(f"must be true or false, got {value!r}")


def integer(value: Any, low: int, high: int) -> int:
    # Numbers arrive from the engine as floats; 3.0 is 3, 3.5 is not.
    if isinstance(value, bool):
        raise Invalid(f"must be an integer from {low} to {high}, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if not isinstance(value, int) or not low <= value <= high:
        raise Invalid(f"must be an integer from {low} to {high}, got {value!r}")
    return value


def sysctl_key(value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid(f"must be a sysctl key, got {value!r}")
    key = value.strip().replace("/", ".")
    if not _SYSCTL_KEY.fullmatch(key) or len(key) > 200:
        raise Invalid(f"{value!r} is not a sysctl key (like net.ipv4.ip_forward)")
    return key


def sysctl_value(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool):
        value = int(value)
    text = str(value).strip()
    if not re.fullmatch(r"[A-Za-z0-9 ._:-]{1,64}", text):
        raise Invalid(f"{value!r} is not a plain sysctl value")
    return " ".join(text.split())


#: Tables iproute2 knows without rt_tables (lib/rt_names.c); their ids are not ours to name.
BUILTIN_TABLES = {"unspec": 0, "default": 253, "main": 254, "local": 255}


#: The routing table ids we may name and fill (0 and 253-255 are the kernel's).
TABLE_IDS = (1, 252)


def table_id(value: Any) -> int:
    """A routing table id we may name and fill: 1-252 (0 and 253-255 are the kernel's)."""
    try:
        return integer(value, *TABLE_IDS)
    except Invalid as err:
        raise Invalid(f"table id {err} (0 and 253-255 are reserved)") from err


def table_name(value: Any) -> str:
    """An rt_tables name: no built-in name, and never all digits (iproute2 would read
    '201' as an id, so such a name could never be looked up)."""
    text = name(value, "routing table name")
    if text in BUILTIN_TABLES:
        raise Invalid(f"{text!r} is a built-in table name (local, main, default, unspec)")
    return text


def table(value: Any) -> int | str:
    """A table by id (1-252) or by name (an rt_tables name, or main/default/local)."""
    if isinstance(value, int | float) or (isinstance(value, str) and value.strip().isdigit()):
        return table_id(value)
    if isinstance(value, str) and value.strip() in BUILTIN_TABLES and value.strip() != "unspec":
        return value.strip()
    return table_name(value)


_OWNER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}$")


def owner_name(value: Any) -> str:
    """`<project>.<stack>`: a plain file name (Pulumi's stack names are [A-Za-z0-9_.-])."""
    if not isinstance(value, str) or not _OWNER.fullmatch(value) or ".." in value:
        raise Invalid(f"{value!r} is not an owner name (project.stack)")
    return value


# LVM's own rules for VG and LV names (lvm(8) "VALID NAMES", lib/misc/lvm-string.c): at
# most 127 characters of [A-Za-z0-9+_.-], no leading '-' (it separates VG and LV in
# device-mapper names), not '.' or '..'; an LV name neither starts with "snapshot" or
# "pvmove" nor holds a suffix LVM keeps for its sub-volumes.
_LVM_NAME = re.compile(r"^[A-Za-z0-9+_.][A-Za-z0-9+_.-]{0,126}$")
_LV_RESERVED_PREFIXES = ("snapshot", "pvmove")
_LV_RESERVED_PARTS = (
    "_cdata", "_cmeta", "_corig", "_idata", "_imeta", "_iorig", "_mimage", "_mlog",
    "_pmspare", "_rimage", "_rmeta", "_tdata", "_tmeta", "_vdata", "_vorigin",
)  # fmt: skip
#: /dev's own directories: LVM refuses them as VG names (/dev/mapper/<vg>-<lv> is the same
#: volume's device-mapper name, not /dev/<vg>/<lv>).
_DEV_DIRECTORIES = ("block", "bus", "char", "disk", "fd", "hugepages", "mapper", "mqueue",
                    "net", "pts", "shm")  # fmt: skip


def lvm_volume(path: Any) -> tuple[str, str]:
    """`/dev/<vg>/<lv>` -> (vg, lv), both names lvcreate accepts."""
    parts = path.split("/") if isinstance(path, str) else []
    if len(parts) != 4 or parts[:2] != ["", "dev"]:
        raise Invalid(f"{path!r} is not an LVM volume path /dev/<vg>/<lv>")
    vg, lv = parts[2], parts[3]
    for what, text in (("VG", vg), ("LV", lv)):
        if not _LVM_NAME.fullmatch(text) or text in (".", ".."):
            raise Invalid(
                f"{text!r} in {path} is not a valid {what} name: 1-127 of letters, digits, "
                "'+', '_', '.', '-', not starting with '-'"
            )
    if vg in _DEV_DIRECTORIES:
        raise Invalid(f"{path} is not an LVM volume path /dev/<vg>/<lv>: /dev/{vg} is /dev's own")
    reserved = [p for p in _LV_RESERVED_PREFIXES if lv.startswith(p)]
    reserved += [p for p in _LV_RESERVED_PARTS if p in lv]
    if reserved:
        raise Invalid(f"LV name {lv!r} in {path} uses {reserved[0]!r}, which LVM reserves")
    return vg, lv
