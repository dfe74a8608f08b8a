"""The cutover's work on the new upstream, as one command that runs there (pure).

The blog flushes the mark with `tcpdump -c1 ... && iptables -t mangle -F` typed on the
new host: the egress changes the moment the first packet arrives directly, with no round
trip to the machine running `pulumi up`. `on_first_packet` builds the same thing as argv:
a constant script for `sh -c`, with every value (timeout, interface, prefix, the commands
to run) passed as a positional argument, so no stack value is ever part of shell text.
"""

from __future__ import annotations

from dataclasses import dataclass

from providers.plans import Argv, Plan, PlanError

# Markers the script prints, one per line, so the caller can time each step.
PID = "pid"
FIRST_PACKET = "first-packet"
NO_PACKET = "no-packet"
DONE = "egress-switched"
#: The script's exit status when no packet came: it ran nothing.
NO_PACKET_EXIT = 5

# $1 timeout, $2 interface, $3 prefix, $4 how many times to run the command in $5...
# tcpdump's exit: 0 a packet: run the commands; 124 the timeout: run nothing (the blog's
# rule: the mark goes only when a packet has arrived directly, whatever a backend says);
# anything else means it could not watch: run nothing.
SCRIPT = f"""echo {PID} $$
timeout "$1" tcpdump -Q in -n -l --immediate-mode -c 1 -i "$2" dst net "$3" >/dev/null
status=$?
if [ "$status" -eq 0 ]; then echo {FIRST_PACKET}
elif [ "$status" -eq 124 ]; then echo {NO_PACKET}; exit {NO_PACKET_EXIT}
else exit 3
fi
count=$4
shift 4
while [ "$count" -gt 0 ]; do "$@" || exit 4; count=$((count - 1)); done
echo {DONE}
"""


@dataclass(frozen=True)
class Trigger:
    """The argv to start on the new upstream, and how many commands it will run."""

    argv: Argv
    commands: int


def on_first_packet(timeout_s: int, interface: str, prefix: str, then: Plan) -> Trigger:
    """Watch `interface` for a packet to `prefix`, then run `then`'s commands there; at
    the timeout, run nothing (the caller's `up` fails, and the next `up` watches again).

    `then` is a mangle delete plan: zero or more copies of one command (every copy of
    our rule goes). Different commands are refused rather than half-run.
    """
    if then.writes:
        raise PlanError("the first-packet trigger runs commands only, not file writes")
    distinct = set(then.commands)
    if len(distinct) > 1:
        raise PlanError(f"the first-packet trigger runs one command, got {len(distinct)}")
    command: Argv = then.commands[0] if then.commands else ("true",)
    argv = (
        "sh", "-c", SCRIPT, "glidepath-cutover",
        str(int(timeout_s)), interface, prefix, str(len(then.commands)), *command,
    )  # fmt: skip
    return Trigger(argv, len(then.commands))


def parse_pid(line: str) -> int | None:
    """The script's first line, `pid N`, as an int (None for anything else)."""
    marker, _, value = line.strip().partition(" ")
    if marker != PID or not value.isdigit():
        return None
    return int(value)
