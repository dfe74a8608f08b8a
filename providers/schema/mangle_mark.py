"""MangleMark's inputs: the egress mark on VM traffic,
`iptables -t mangle -A <chain> -s <source> -i <in_interface> -j MARK --set-mark <mark>`."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args

from pydantic import BeforeValidator

from providers import validate
from providers.schema.fields import Ipv4Prefix, Mark, ResourceArgs, checked
from providers.schema.host import Endpoint
from providers.validate import Invalid

#: Comments that mark a rule as glidepath's: `glidepath`, or `glidepath <something>`.
OWNER = "glidepath"
#: The built-in mangle chains where `-i` is allowed (not OUTPUT or POSTROUTING).
Chain = Literal["PREROUTING", "INPUT", "FORWARD"]
CHAINS: tuple[str, ...] = get_args(Chain)
# iptables keeps at most 255 bytes of comment; a character set that needs no escaping in
# iptables-save output beyond the double quotes around spaces.
_COMMENT = re.compile(rf"^{OWNER}( [A-Za-z0-9_.:/=-][A-Za-z0-9 _.:/=-]{{0,200}})?$")


def owned_comment(comment: Any) -> str:
    if isinstance(comment, str) and _COMMENT.fullmatch(comment):
        return comment
    raise Invalid(
        f"{comment!r} must be '{OWNER}' or '{OWNER} <words>' (letters, digits, ' _.:/=-'; at "
        "most 210 characters): the comment is how glidepath finds its rules"
    )


def _upper(chain: Any) -> Any:
    return chain.strip().upper() if isinstance(chain, str) else chain


class MangleMarkArgs(ResourceArgs):
    host: Endpoint
    source: Ipv4Prefix
    in_interface: Annotated[str, checked(validate.interface_name, wildcard=True)]
    """One interface, or every one with a prefix: `vif+`."""
    mark: Mark
    chain: Annotated[Chain, BeforeValidator(_upper)] = "PREROUTING"
    comment: Annotated[str, checked(owned_comment)] = OWNER
