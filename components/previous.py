"""What this stack's last `up` decided, read back through a self StackReference.

`upstream: auto` means: the host where all the network's VMs are, and while they are
split across hosts, the host the prefix is routed to now. That last part is state, not
config; the program exports it (`upstreams`) and reads its previous value here.
"""

from __future__ import annotations

from typing import Any

import pulumi


def previous_outputs(name: str) -> Any:
    """The stack's previous output `name`, or None (first run, or no such output)."""
    # A private SDK helper, but the documented way the SDK itself turns an async read into
    # a value at program time (sync invokes use it); resource layout depends on it here.
    from pulumi.runtime.sync_await import _sync_await

    stack = pulumi.get_stack()
    reference = pulumi.StackReference(
        f"{pulumi.get_organization()}/{pulumi.get_project()}/{stack}",
        opts=pulumi.ResourceOptions(),
    )
    try:
        details = _sync_await(reference.get_output_details(name))
    except Exception:
        return None
    value = details.value if details.value is not None else details.secret_value
    return value
