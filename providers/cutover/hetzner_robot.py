"""`hetzner-robot`: the Robot web service's failover switch moves the prefix.

Stack config::

    glidepath:networks.<net>.cutover:
      kind: hetzner-robot
      base_url: https://robot-ws.your-server.de  # default; http only for loopback (tests)
      failover_ip: 203.0.113.0                   # default: the prefix's network address
      timeout_s: 180                             # optional bound per request (default 180)
    glidepath:robot: {user: ..., password: ...}  # secret: a Robot *web service* user

The API as documented (robot.hetzner.com/doc/webservice/en.html, "Failover" and "Errors"):
- `GET /failover/{failover-ip}` -> `{"failover": {"ip", "netmask", "server_ip",
  "server_ipv6_net", "server_number", "active_server_ip"}}`; `active_server_ip` is the
  main IP of the server the IP/net is routed to now (null when unrouted). 100 requests/h.
- `POST /failover/{failover-ip}` with form field `active_server_ip` (the target server's
  main IP; for an IPv6 net, its main /64's address) switches the routing. 50 requests/h.
  409 FAILOVER_ALREADY_ROUTED, 409 FAILOVER_LOCKED (another switch is running), 404
  NOT_FOUND / FAILOVER_NEW_SERVER_NOT_FOUND, 400 INVALID_INPUT, 500 FAILOVER_FAILED /
  FAILOVER_NOT_COMPLETE.
- A failover *net* is addressed by its net address (`ip` is "Failover net address").
- Errors are `{"error": {"status", "code", "message"}}`; a wrong user/password is a plain
  401, and 3 failed logins block the caller's IP for 10 minutes (so 401 is never retried);
  the rate limit is 403 RATE_LIMIT_EXCEEDED with `max_request` and `interval` (seconds);
  503 means maintenance.
- A switch takes 40 to 60 s (docs.hetzner.com, "Failover"), and the POST returns when it
  is done (community.hrobot's failover_ip: "the API call returns when the failover IP has
  been successfully routed"); a POST that outlasts `timeout_s` may still switch.
- Only a failover IP or net can be switched. An ordinary additional subnet is routed to
  one server and is no failover object (GET: 404 NOT_FOUND); Hetzner sells failover
  subnets as their own order, and moves an ordinary one only on a support request.

Calls: `check_switch` (the preview of a cutover) is one GET; `current` one GET; `switch`
one POST and one GET (the read back). docs/troubleshooting.md counts them per run.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from providers.cutover import CutoverError, SwitchPending
from providers.schema.errors import problems
from providers.schema.upstream import PLACEHOLDER, HetznerRobotCutover, Robot, is_loopback

READ_TIMEOUT_S = 30.0
# One retry after Robot's rate-limit window, and only if the window is this short; the
# documented windows are an hour, so in practice a rate limit fails at once.
MAX_RATE_LIMIT_WAIT_S = 10.0
# Bodies are a few hundred bytes; anything bigger is not the Robot API.
MAX_BODY_BYTES = 1 << 20


def _log(line: str) -> None:
    print(line, flush=True)


def _said(where: str, model: type[BaseModel], error: ValidationError) -> str:
    # Pydantic's own text would print the values (a password among them): the reasons only.
    found = problems(model, error)
    return "; ".join(
        f"{where}.{path}: {reason}" if path else f"{where}: {reason}" for path, reason in found
    )


def _settings(cutover: Mapping[str, Any]) -> HetznerRobotCutover:
    """The cutover's fields as the Upstream's `check` takes them, defaults filled in."""
    try:
        return HetznerRobotCutover.model_validate({**cutover, "kind": "hetzner-robot"})
    except ValidationError as error:
        raise CutoverError(_said("cutover", HetznerRobotCutover, error)) from None


#: Where a pipeline hands the Robot credentials to the approved deploy (docs/gitops.md).
ROBOT_ENVIRONMENT = ("GLIDEPATH_ROBOT_USER", "GLIDEPATH_ROBOT_PASSWORD")


def robot_credentials(configured: Any, environ: Mapping[str, str] | None = None) -> Any:
    """The Robot credentials to use: GLIDEPATH_ROBOT_USER and GLIDEPATH_ROBOT_PASSWORD
    from the environment when both are set, else `glidepath:robot` as configured.

    The environment wins so that a pipeline never has to write them into the stack: the
    stack's config is part of an update plan (the dynamic providers take all of it as
    their inputs), and a pull request's preview, which saves the plan, never has them."""
    env = os.environ if environ is None else environ
    user, password = (env.get(name, "") for name in ROBOT_ENVIRONMENT)
    if user and password:
        return {"user": user, "password": password}
    return configured


def _credentials(credentials: Any) -> Robot:
    try:
        robot = Robot.model_validate(credentials)
    except ValidationError as error:
        raise CutoverError(_said("glidepath:robot", Robot, error) + " (as secrets)") from None
    if not isinstance(robot.user, str) or not isinstance(robot.password, str):
        raise CutoverError("glidepath:robot is still encrypted (secure: ...)")
    return robot


def _prefixlen(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, netmask: str) -> int:
    """Robot writes the mask as an address ("255.255.255.248", "ffff:ffff:ffff:ffff::")."""
    mask = int(ipaddress.ip_address(netmask))
    bits = ip.max_prefixlen
    length = bin(mask).count("1")
    if mask != ((1 << bits) - 1) ^ ((1 << (bits - length)) - 1):
        raise ValueError(f"{netmask} is not a contiguous netmask")
    return length


@dataclass(frozen=True)
class RobotError:
    """One error answer: HTTP status and, where the body is Robot's error format, its fields."""

    status: int
    code: str
    message: str
    fields: dict[str, Any]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib would resend the Authorization header to wherever a redirect points (even
    # another host or plain http); Robot does not redirect, so a redirect is an error.
    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None


class HetznerRobot:
    kind = "hetzner-robot"

    def __init__(
        self,
        cutover: Mapping[str, Any],
        prefix: str,
        credentials: Any,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        try:
            self.prefix = ipaddress.ip_network(prefix, strict=False)
        except ValueError:
            raise CutoverError(f"{prefix!r} is not an IP prefix") from None
        settings = _settings(cutover)
        self.base_url = settings.base_url
        # A failover net is addressed by its net address.
        self.failover_ip = settings.failover_ip or str(self.prefix.network_address)
        self.timeout_s = float(settings.timeout_s)
        robot = _credentials(credentials)
        self._user, self._password = str(robot.user), str(robot.password)
        #: The example's placeholders: nothing is sent (see `_request`).
        self.placeholders = robot.placeholders
        token = base64.b64encode(f"{self._user}:{self._password}".encode()).decode("ascii")
        self._authorization = f"Basic {token}"
        self._sleep = sleep
        host = urllib.parse.urlsplit(self.base_url).hostname or ""
        # Certificates and host names are always verified; there is no switch to turn it off.
        self._context = ssl.create_default_context()
        handlers: list[urllib.request.BaseHandler] = [
            _NoRedirect(),
            urllib.request.HTTPSHandler(context=self._context),
        ]
        if is_loopback(host):
            handlers.append(urllib.request.ProxyHandler({}))  # a proxy cannot reach our loopback
        self._opener = urllib.request.build_opener(*handlers)

    def __repr__(self) -> str:
        return f"HetznerRobot({self.base_url!r}, failover_ip={self.failover_ip!r})"

    # -- Backend -----------------------------------------------------------------------

    def current(self) -> str | None:
        """The main IP of the server Robot routes the failover IP/net to; None if unrouted."""
        record = self._failover(self._request("GET", timeout=min(self.timeout_s, READ_TIMEOUT_S)))
        return record.get("active_server_ip") or None

    def check_switch(self, current: str | None, target: str, main_ips: Mapping[str, str]) -> str:
        """Before a cutover from host `current` to host `target` (the preview): one GET.
        The credentials work, the prefix is a failover IP/net of this account, and Robot
        routes it to the current upstream's main IP (or the target's already). Returns
        what was found; raises CutoverError saying what is wrong otherwise.

        `main_ips`: each host's main IP, by name."""
        routed = self.current()
        target_ip = main_ips[target]
        if routed == target_ip:
            return (
                f"Robot routes {self._what()} to {target} ({target_ip}) already: no switch "
                "needed, the cutover waits for its first direct packet there"
            )
        current_ip = main_ips.get(current) if current is not None else None
        if current_ip is not None and routed == current_ip:
            return (
                f"Robot routes {self._what()} to {current} ({routed}) now and can switch "
                f"it to {target} ({target_ip})"
            )
        hosts = ", ".join(f"{name} {ip}" for name, ip in main_ips.items())
        expected = f"{current} ({current_ip})" if current_ip else str(current)
        elsewhere = next((name for name, ip in main_ips.items() if ip == routed), None)
        if elsewhere is not None:
            found = (
                f"{elsewhere} ({routed}), but this stack's state says {expected}: it was "
                "switched outside this stack. `pulumi refresh` (the state learns where it is "
                "routed), then preview again"
            )
        elif routed is None:
            found = (
                f"no server (unrouted), but this stack's state says {expected}. Route it to "
                f"{expected} in Robot, then preview again"
            )
        else:
            found = (
                f"{routed}, the main IP of no host of this stack: switching it to {target} "
                f"would take it from that server. If {routed} is one of these servers, set "
                "its main_ip to it (address stays where SSH reaches it); otherwise check "
                "cutover.failover_ip"
            )
        raise CutoverError(f"Robot routes {self._what()} to {found}. Main IPs: {hosts}")

    def switch(self, address: str) -> None:
        try:
            target = str(ipaddress.ip_address(address))
        except ValueError:
            raise CutoverError(f"{address!r} is not a server's main IP address") from None
        answer = self._request("POST", {"active_server_ip": target}, timeout=self.timeout_s)
        if isinstance(answer, RobotError):
            if answer.code == "FAILOVER_ALREADY_ROUTED":
                _log(f"cutover (hetzner-robot): {self._what()} is already routed to {target}")
                return
            raise self._error(answer, f"switching {self._what()} to {target}")
        accepted = self._failover(answer).get("active_server_ip")
        # Read back what Robot reports now. The caller waits for the first packet on the new
        # host in any case, so a lagging answer is reported, not treated as a failure.
        try:
            now = self.current()
        except CutoverError as error:
            _log(
                f"cutover (hetzner-robot): Robot accepted the switch of {self._what()} to "
                f"{target} (answer: {accepted}) but reading it back failed: {error}"
            )
            return
        if now == target:
            _log(f"cutover (hetzner-robot): Robot routes {self._what()} to {target}")
        else:
            _log(
                f"cutover (hetzner-robot): Robot accepted the switch of {self._what()} to "
                f"{target} (answer: {accepted}), but still reports {now} as active; the "
                "first packet on the new host tells when it takes effect"
            )

    def nudge(self, addresses: list[str]) -> None:
        pass  # Robot cannot send traffic; real traffic is the evidence

    def unreachable(self, addresses: list[str]) -> list[str]:
        return []  # Robot cannot ping; the first direct packet is the evidence

    # -- HTTP --------------------------------------------------------------------------

    def _what(self) -> str:
        return f"failover {self.failover_ip} ({self.prefix})"

    def _url(self) -> str:
        return f"{self.base_url}/failover/{urllib.parse.quote(self.failover_ip, safe=':')}"

    def _request(
        self, method: str, form: dict[str, str] | None = None, *, timeout: float
    ) -> dict[str, Any] | RobotError:
        """One call, plus at most one retry after a short documented rate-limit window.

        Returns the decoded body of a 2xx answer, or the RobotError of a 409 (whose meaning
        the caller decides); every other error raises CutoverError.
        """
        if self.placeholders:
            # Robot would answer 401 and count it: 3 of them block this address for 10 min.
            raise CutoverError(
                f"glidepath:robot holds the example's placeholders ({PLACEHOLDER}...), not a "
                "Robot web service user; nothing was sent to Robot. Set them: pulumi config "
                "set --secret --path glidepath:robot.user (and .password)"
            )
        for attempt in (1, 2):
            answer = self._send(method, form, timeout)
            if not isinstance(answer, RobotError) or answer.code != "RATE_LIMIT_EXCEEDED":
                break
            wait = answer.fields.get("interval")
            if attempt == 1 and isinstance(wait, int | float) and 0 < wait <= MAX_RATE_LIMIT_WAIT_S:
                _log(f"cutover (hetzner-robot): Robot's rate limit reached; retrying in {wait} s")
                self._sleep(float(wait))
                continue
            break
        if isinstance(answer, RobotError) and answer.status != 409:
            target = (form or {}).get("active_server_ip")
            doing = f"switching {self._what()} to {target}" if target else f"reading {self._what()}"
            raise self._error(answer, doing)
        return answer

    def _send(
        self, method: str, form: dict[str, str] | None, timeout: float
    ) -> dict[str, Any] | RobotError:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        # The scheme is https (or http to loopback): the cutover's base_url allows no other.
        request = urllib.request.Request(self._url(), data=data, method=method)  # noqa: S310
        request.add_header("Authorization", self._authorization)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with self._opener.open(request, timeout=timeout) as response:
                status, body = response.status, response.read(MAX_BODY_BYTES)
        except urllib.error.HTTPError as error:
            status = error.code
            try:
                body = error.read(MAX_BODY_BYTES)
            except OSError:
                body = b""
            finally:
                error.close()
        except TimeoutError:
            raise self._no_answer(method, timeout) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            if isinstance(reason, TimeoutError):
                raise self._no_answer(method, timeout) from None
            raise CutoverError(
                f"cannot reach Robot at {self.base_url}: {self._scrub(str(reason))}"
            ) from None
        decoded: Any
        try:
            decoded = json.loads(body.decode("utf-8")) if body else None
        except (UnicodeDecodeError, ValueError):
            decoded = None
        if 200 <= status < 300:
            if not isinstance(decoded, dict):
                raise CutoverError(f"Robot answered {method} {self._what()} with no JSON object")
            return decoded
        fields = decoded.get("error") if isinstance(decoded, dict) else None
        fields = fields if isinstance(fields, dict) else {}
        return RobotError(
            status=status,
            code=str(fields.get("code") or ""),
            message=str(fields.get("message") or ""),
            fields=fields,
        )

    def _no_answer(self, method: str, timeout: float) -> CutoverError:
        said = f"Robot did not answer {method} {self._what()} within {timeout:g} s"
        if method == "POST":
            # Robot answers a switch when it is done: it may be switching still.
            return SwitchPending(f"{said}; the switch may still be in progress")
        return CutoverError(said)

    def _failover(self, answer: dict[str, Any] | RobotError) -> dict[str, Any]:
        if isinstance(answer, RobotError):
            raise self._error(answer, f"reading {self._what()}")
        record = answer.get("failover")
        if not isinstance(record, dict):
            raise CutoverError(f"Robot's answer for {self._what()} has no 'failover' object")
        self._check_covers(record)
        return record

    def _check_covers(self, record: dict[str, Any]) -> None:
        """A failover IP or net smaller than the prefix would move only part of it."""
        ip, netmask = record.get("ip"), record.get("netmask")
        if not isinstance(ip, str) or not isinstance(netmask, str):
            return
        try:
            address = ipaddress.ip_address(ip)
            net = ipaddress.ip_network((address, _prefixlen(address, netmask)), strict=False)
        except ValueError:
            return
        if self.prefix.version != net.version or not self.prefix.subnet_of(net):  # type: ignore[arg-type]
            raise CutoverError(
                f"Robot's failover {ip}/{net.prefixlen} does not cover {self.prefix}: switching "
                "it would move only part of the prefix. Set cutover.failover_ip to the failover "
                f"net that holds {self.prefix}."
            )

    def _error(self, error: RobotError, doing: str) -> CutoverError:
        detail = self._scrub(
            f"{error.status} {error.code}".strip() + (f": {error.message}" if error.message else "")
        )
        if error.status == 401:
            message = (
                "Robot rejected the credentials in glidepath:robot (401). They must be a Robot "
                "web service user (Settings -> Web service and app settings), not the Robot "
                "login; Robot blocks the calling IP for 10 minutes after 3 failed logins, so "
                "fix them before trying again"
            )
        elif error.code == "RATE_LIMIT_EXCEEDED":
            limit, interval = error.fields.get("max_request"), error.fields.get("interval")
            known = limit is not None and interval is not None
            window = f"{limit} requests per {interval} s" if known else "its limit"
            wait = f"up to {interval} s (Robot's window)" if interval else "for Robot's window"
            message = (
                f"Robot's rate limit is exceeded ({window}) while {doing}; this call changed "
                f"nothing. Wait {wait}, then `pulumi up` again"
            )
        elif error.code == "FAILOVER_LOCKED":
            message = (
                f"Robot is already switching {self._what()} (409 FAILOVER_LOCKED: another "
                "switch is in progress). Wait for it to finish, check where it points "
                "(`pulumi refresh`), then `pulumi up` again"
            )
        elif error.code == "NOT_FOUND":
            message = (
                f"Robot has no {self._what()} in this account ({detail}): {self.prefix} is "
                "not a failover IP or net there, so Robot cannot switch it. An ordinary "
                "additional subnet is routed to one server, and Robot's API cannot move it "
                "(Hetzner sells failover subnets as a separate order): set cutover.kind: "
                "manual and ask Hetzner support to route the subnet to the new server's main "
                "IP, as the blog did. If it is a failover net, set cutover.failover_ip to its "
                "address"
            )
        elif error.code == "FAILOVER_NEW_SERVER_NOT_FOUND":
            message = (
                f"{doing}: the target is not the main IP of a server in this account ({detail})"
            )
        elif error.status == 503:
            message = f"Robot's web service is down for maintenance (503) while {doing}"
        elif error.code in ("FAILOVER_FAILED", "FAILOVER_NOT_COMPLETE"):
            message = (
                f"Robot failed while {doing} ({detail}); check where it points "
                "(`pulumi refresh`) before trying again"
            )
        else:
            message = f"Robot refused {doing}: {detail or 'no error body'}"
        return CutoverError(message)

    def _scrub(self, text: str) -> str:
        # For text that comes from outside (Robot's messages, socket errors): neither should
        # hold the credentials, but messages are printed by the engine, so make sure.
        for secret in (self._password, self._user, self._authorization):
            if secret:
                text = text.replace(secret, "***")
        return text
