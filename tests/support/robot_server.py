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

Every request is recorded so a test can count what reached the server. Plain http on
127.0.0.1 with an ephemeral port; threaded, so a test may call it from several threads.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
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
class RobotState:
    user: str
    password: str
    failovers: dict[str, Failover]
    servers: set[str]  # main IPs a failover may be routed to
    limits: dict[str, Limit] = field(
        default_factory=lambda: {"GET": Limit(100, 3600), "POST": Limit(50, 3600)}
    )
    locked: set[str] = field(default_factory=set)  # failover IPs with a switch "in progress"
    # When set, a POST answers with the new target but GET keeps showing the old one until
    # `settle()`: Robot's switch taking effect after its answer.
    lagging: bool = False
    pending: dict[str, str] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    calls: dict[str, list[float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def settle(self) -> None:
        with self.lock:
            for ip, target in self.pending.items():
                self.failovers[ip].active_server_ip = target
            self.pending.clear()

    def count(self, method: str, *, authorized: bool | None = None) -> int:
        with self.lock:
            return sum(
                1
                for s in self.seen
                if s.method == method and (authorized is None or s.authorized == authorized)
            )


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
            status, payload = self._answer(state, method, body, authorized)
            state.seen.append(Seen(method, self.path, status, authorized))
        data = json.dumps(payload).encode()
        self.send_response(status)
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="Webservice"')
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _answer(
        self, state: RobotState, method: str, body: str, authorized: bool
    ) -> tuple[int, dict[str, Any]]:
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
        if state.pending.get(ip, failover.active_server_ip) == target:
            return _error(
                409,
                "FAILOVER_ALREADY_ROUTED",
                "The failover IP address is already routed to the selected server",
            )
        if ip in state.locked:
            return _error(
                409,
                "FAILOVER_LOCKED",
                "Switching the failover IP address is blocked due to another active request",
            )
        if state.lagging:
            state.pending[ip] = target
            answer = Failover(**{**failover.__dict__, "active_server_ip": target})
            return 200, answer.record()
        failover.active_server_ip = target
        return 200, failover.record()


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
    """Serve `state` on 127.0.0.1:<ephemeral> until the block ends."""
    server = _Server(state)
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="robot-server", daemon=True
    )
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield RobotServer(state, f"http://{host!s}:{port}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
