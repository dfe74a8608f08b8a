"""`make demo`: bring the lab up and run glidepath on it through the real Pulumi CLI.

What exists today: each hypervisor's host network (issue 4 grows it to the blog's whole
path). Moving the VM (`host: old` -> `host: new`) arrives with VM placement (issue 5);
until then this demo says so instead of pretending.
"""

from __future__ import annotations

import sys

import lab
from engine.workspace import project_stack


def main() -> int:
    print("demo: bringing the lab up (python -m lab up)", flush=True)
    lab.up()
    stack = project_stack("lab")
    print("demo: pulumi up on stack 'lab'", flush=True)
    result = stack.up(on_output=print)
    print("demo: pulumi preview (expect no changes)", flush=True)
    preview = stack.preview(on_output=print)
    unchanged = set(preview.change_summary) <= {"same"}
    print(
        f"demo: applied {sum((result.summary.resource_changes or {}).values())} resources; "
        f"second preview {'shows no changes' if unchanged else 'shows changes'}"
    )
    print(
        "demo: the VM move (changing glidepath:vms.blog.host) is not implemented yet "
        "(VM placement, issue 5): no VM was moved."
    )
    return 0 if unchanged else 1


if __name__ == "__main__":
    sys.exit(main())
