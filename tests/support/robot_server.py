"""A local stand-in for the Hetzner Robot web service's failover endpoints, written from
the documentation (robot.hetzner.com/doc/webservice/en.html, "Errors" and "Failover"):

- `GET /failover/{failover-ip}` -> `{"failover": {ip, netmask, server_ip, server_ipv6_net,
  server_number, active_server_ip}}`; 404 NOT_FOUND for an unknown address.
- `POST /failover/{failover-ip}` with form field `active_server_ip` -> the same object,
  routed to the new server; 400 INVALID_INPUT, 404 FAILOVER_NEW_SERVER_NOT_FOUND,
  409 FAILOVER_ALREADY_ROUTED, 409 FAILOVER_LOCKED.
- HTTP basic auth; a wrong user or password gets 401 and changes nothing.
- Request limits per endpoint (documented: GET 100 and POST 50 per hour; configurable
  here) answered with 403 RATE_LIMIT_EXCEEDED, `max_request` and `interval`.
- 503 while the web service is down for maintenance (`maintenance`).

A switch takes time (docs.hetzner.com, "Failover": 40 to 60 seconds; scaled down here to
`switch_s`), and the POST returns when it is done (community.hrobot's failover_ip: "the
API call returns when the failover IP has been successfully routed"). While it runs, GET
still reports the old server and any other POST for that address gets 409
FAILOVER_LOCKED; then the route takes effect (`on_switch(ip, target)` is called first: the
lab's router follows it) and the POST answers 200. With `fail_after_s` the switch fails
after that delay instead: 500 FAILOVER_FAILED, the routing unchanged. `lagging` answers
the POST at once and lets the switch take effect (or fail) later, as a Robot whose
answer runs ahead of its routing would. `settle()` ends every running switch now.

Every request is recorded so a test can count what reached the server. Plain http on
127.0.0.1 with an ephemeral port; threaded, so a test may call it from several threads.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import threading
import time
import traceback
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Failover:
    ip: str
    netmask: str
    server_ip: str
    server_number: int
    active_server_ip: str | None
    server_ipv6_net: str = "2a01:4f8:d0a:2003::"

    def record(self) -> dict[str, Any]:
        return {
            "failover": {
                "ip": self.ip,
                "netmask": self.netmask,
                "server_ip": self.server_ip,
                "server_ipv6_net": self.server_ipv6_net,
                "server_number": self.server_number,
                "active_server_ip": self.active_server_ip,
            }
        }


@dataclass(frozen=True)
class Limit:
    max_request: int
    interval: int  # seconds


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    status: int
    authorized: bool


@dataclass
class _Switch:
    """One switch in progress: it takes effect (or fails) when `done` is set or its delay
    has passed, whichever comes first."""

    ip: str
    target: str
    delay_s: float
    fails: bool
    done: threading.Event = field(default_factory=threading.Event)


@dataclass
class RobotState:
    user: str
    password: str
    failovers: dict[str, Failover]
    servers: set[str]  # main IPs a failover may be routed to
    limits: dict[str, Limit] = field(
        default_factory=lambda: {"GET": Limit(100, 3600), "POST": Limit(50, 3600)}
    )
    locked: set[str] = field(default_factory=set)  # failover IPs with a switch in progress
    #: How long a switch takes, in seconds (Robot: 40-60 s).
    switch_s: float = 0.0
    #: Set: a switch fails after this many seconds (500 FAILOVER_FAILED), routing unchanged.
    fail_after_s: float | None = None
    #: The POST answers at once, before its switch takes effect (or fails).
    lagging: bool = False
    #: Every request gets 503: the web service is down for maintenance.
    maintenance: bool = False
    #: Called with (failover ip, target) as a switch takes effect, before GET reports it.
    on_switch: Callable[[str, str], None] | None = None
    pending: dict[str, str] = field(default_factory=dict)  # ip -> target, while switching
    seen: list[Seen] = field(default_factory=list)
    calls: dict[str, list[float]] = field(default_factory=dict)
    #: What went wrong in `on_switch` (the switch then failed); a test asserts it is empty.
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    switches: dict[str, _Switch] = field(default_factory=dict)
    closed: bool = False

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)

    def settle(self, timeout: float = 30.0) -> None:
        """End every running switch now (each takes effect, or fails if set to) and wait
        until they have."""
        with self.lock:
            for switch in self.switches.values():
                switch.done.set()
            if not self.changed.wait_for(lambda: not self.switches, timeout):
                raise TimeoutError(f"switches still running after {timeout} s: {self.pending}")

    def close(self) -> None:
        """Stop: a switch still running never takes effect (no `on_switch` afterwards)."""
        with self.lock:
            self.closed = True
            for switch in self.switches.values():
                switch.done.set()

    def count(self, method: str, *, authorized: bool | None = None) -> int:
        with self.lock:
            return sum(
                1
                for s in self.seen
                if s.method == method and (authorized is None or s.authorized == authorized)
            )

    def run(self, switch: _Switch) -> bool:
        """Wait for the switch, then apply it; True if it took effect."""
        switch.done.wait(switch.delay_s)
        took_effect = False
        if not switch.fails and not self.closed:
            try:
                if self.on_switch is not None:
                    self.on_switch(switch.ip, switch.target)
                took_effect = True
            except Exception:
                self.errors.append(traceback.format_exc())
        with self.lock:
            if took_effect and not self.closed:
                self.failovers[switch.ip].active_server_ip = switch.target
            self.locked.discard(switch.ip)
            self.pending.pop(switch.ip, None)
            self.switches.pop(switch.ip, None)
            self.changed.notify_all()
        return took_effect and not self.closed


def _error(status: int, code: str, message: str, **extra: Any) -> tuple[int, dict[str, Any]]:
    return status, {"error": {"status": status, "code": code, "message": message, **extra}}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet; tests read `state.seen`

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _authorized(self, state: RobotState) -> bool:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[len("Basic ") :], validate=True).decode()
        except ValueError:
            return False
        return decoded == f"{state.user}:{state.password}"

    def _serve(self, method: str) -> None:
        state = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        authorized = self._authorized(state)
        with state.lock:
            answer = self._answer(state, method, body, authorized)
            switch: _Switch | None = None
            if isinstance(answer, _Switch):
                switch = answer
                # Lagging: the answer already names the target; GET still shows the old one.
                status, payload = 200, state.failovers[switch.ip].record()
                payload["failover"]["active_server_ip"] = switch.target
            else:
                status, payload = answer
            if switch is None or state.lagging:
                state.seen.append(Seen(method, self.path, status, authorized))
        if switch is not None:
            if state.lagging:
                threading.Thread(target=state.run, args=(switch,), daemon=True).start()
            else:
                # The POST returns when the switch is done; the caller may give up first.
                if not state.run(switch):
                    status, payload = _error(
                        500, "FAILOVER_FAILED", "Failover IP address switching failed"
                    )
                else:
                    payload = state.failovers[switch.ip].record()
                with state.lock:
                    state.seen.append(Seen(method, self.path, status, authorized))
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            if status == 401:
                self.send_header("WWW-Authenticate", 'Basic realm="Webservice"')
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the caller gave up waiting (its timeout); Robot went on regardless

    def _answer(
        self, state: RobotState, method: str, body: str, authorized: bool
    ) -> tuple[int, dict[str, Any]] | _Switch:
        """The answer, or for an accepted POST the switch to run before answering."""
        if state.maintenance:
            return _error(503, "MAINTENANCE", "The web service is down for maintenance")
        if not authorized:
            return _error(401, "UNAUTHORIZED", "Unauthorized")
        limit = state.limits.get(method)
        if limit is not None:
            now = time.monotonic()
            recent = [t for t in state.calls.get(method, []) if now - t < limit.interval]
            if len(recent) >= limit.max_request:
                state.calls[method] = recent
                return _error(
                    403,
                    "RATE_LIMIT_EXCEEDED",
                    "rate limit exceeded",
                    max_request=limit.max_request,
                    interval=limit.interval,
                )
            state.calls[method] = [*recent, now]
        path = urllib.parse.urlsplit(self.path).path
        if not path.startswith("/failover/"):
            return _error(404, "NOT_FOUND", "Not found")
        ip = urllib.parse.unquote(path[len("/failover/") :])
        failover = state.failovers.get(ip)
        if failover is None:
            return _error(404, "NOT_FOUND", "Failover IP address not found")
        if method == "GET":
            return 200, failover.record()
        form = urllib.parse.parse_qs(body)
        target = (form.get("active_server_ip") or [""])[0]
        if not target:
            return _error(400, "INVALID_INPUT", "invalid input", missing=["active_server_ip"])
        try:
            target = str(ipaddress.ip_address(target))
        except ValueError:
            return _error(400, "INVALID_INPUT", "invalid input", invalid=["active_server_ip"])
        if target not in state.servers:
            return _error(404, "FAILOVER_NEW_SERVER_NOT_FOUND", "Destination server not found")
        if ip in state.locked:
            return _error(
                409,
                "FAILOVER_LOCKED",
                "Switching the failover IP address is blocked due to another active request",
            )
        if failover.active_server_ip == target:
            return _error(
                409,
                "FAILOVER_ALREADY_ROUTED",
                "The failover IP address is already routed to the selected server",
            )
        if state.fail_after_s is not None:
            switch = _Switch(ip, target, state.fail_after_s, fails=True)
        else:
            switch = _Switch(ip, target, state.switch_s, fails=False)
        state.locked.add(ip)
        state.pending[ip] = target
        state.switches[ip] = switch
        return switch


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: RobotState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


@dataclass(frozen=True)
class RobotServer:
    state: RobotState
    base_url: str


@contextmanager
def robot_server(state: RobotState) -> Iterator[RobotServer]:
    """Serve `state` on 127.0.0.1:<ephemeral> until the block ends (a switch still
    running then never takes effect)."""
    server = _Server(state)
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="robot-server", daemon=True
    )
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield RobotServer(state, f"http://{host!s}:{port}")
    finally:
        state.close()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
