"""A probe from the `client` namespace: ICMP echo (and optionally HTTP GET) every 10 ms,
and optionally one long-lived TCP stream (`--tcp`) whose every byte is checked.

The probe runs as a worker process (`python -m lab.probe`) inside client's
network namespace; it is bounded in count and time, only targets lab
addresses, and reports every reply so a caller can see the longest gap, and
whether replies stopped altogether (a guest hang under TCG) rather than
reporting a clean move.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from lab import topology as t

MAX_SECONDS = 600.0
MAX_COUNT = 60_000


@dataclass
class ProbeResult:
    """Reply timeline of one probe; times are seconds since the probe started."""

    target: str
    interval_s: float
    duration_s: float
    sent: int
    replies: list[tuple[int, float]]  # (icmp seq, receive time)
    http: list[tuple[float, float, bool]] = field(default_factory=list)  # (start, end, ok)
    started_at: float = 0.0  # wall clock (time.time()) at t=0
    # The TCP stream (--tcp): {"error": None or what broke it, "numbers": how many were
    # read in order, "longest_stall_ms": the longest wait for data}; empty without --tcp.
    tcp: dict[str, object] = field(default_factory=dict)

    @property
    def tcp_broken(self) -> bool:
        """The stream was reset, closed, stalled or out of order: a connection a user
        would have lost."""
        return bool(self.tcp) and self.tcp.get("error") is not None

    @property
    def received(self) -> int:
        return len(self.replies)

    @property
    def lost(self) -> int:
        return self.sent - len({s for s, _ in self.replies})

    def gaps(self, min_ms: float = 0.0) -> list[tuple[float, float]]:
        """Reply-free periods as (start s, length ms); the probe's start and end count as edges."""
        edges = [0.0, *sorted(r for _, r in self.replies), self.duration_s]
        out = [(a, (b - a) * 1000) for a, b in itertools.pairwise(edges)]
        return [g for g in out if g[1] >= min_ms]

    @property
    def longest_gap_ms(self) -> float:
        """Longest reply-free period (a probe without replies reports its whole duration)."""
        return max((ms for _, ms in self.gaps()), default=self.duration_s * 1000)

    @property
    def longest_gap_at_s(self) -> float:
        return max(self.gaps(), key=lambda g: g[1], default=(0.0, 0.0))[0]

    @property
    def last_reply_s(self) -> float | None:
        return max((r for _, r in self.replies), default=None)

    @property
    def silent_tail_ms(self) -> float:
        """How long the probe ran after its last reply."""
        last = self.last_reply_s
        return (self.duration_s - (last if last is not None else 0.0)) * 1000

    def replies_after(self, at_s: float) -> int:
        return sum(1 for _, r in self.replies if r > at_s)

    @property
    def http_longest_gap_ms(self) -> float:
        ok = sorted(end for _, end, good in self.http if good)
        edges = [0.0, *ok, self.duration_s]
        return max(
            ((b - a) * 1000 for a, b in itertools.pairwise(edges)), default=self.duration_s * 1000
        )

    def summary(self) -> str:
        s = (
            f"probe {self.target}: {self.sent} sent, {self.received} replies, {self.lost} lost, "
            f"longest gap {self.longest_gap_ms:.0f} ms at {self.longest_gap_at_s:.2f} s"
        )
        if self.silent_tail_ms > 1000:
            s += f"; NO REPLIES in the last {self.silent_tail_ms / 1000:.1f} s"
        if self.http:
            good = sum(1 for *_, ok in self.http if ok)
            s += f"; http {good}/{len(self.http)} ok, longest gap {self.http_longest_gap_ms:.0f} ms"
        if self.tcp:
            s += (
                f"; tcp stream {self.tcp['numbers']} numbers in order, longest stall "
                f"{self.tcp['longest_stall_ms']} ms"
                + (f", BROKEN: {self.tcp['error']}" if self.tcp_broken else "")
            )
        return s


def _check_target(target: str) -> None:
    if not t.in_lab(target):
        raise ValueError(f"probe target {target} is outside the lab's ranges; refusing")


class RunningProbe:
    """A probe running in the background; `stop()` or `wait()` returns its ProbeResult."""

    def __init__(self, proc: subprocess.Popen[str], target: str) -> None:
        self.proc = proc
        self.target = target

    def stop(self, timeout: float = 10.0) -> ProbeResult:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float = MAX_SECONDS + 10) -> ProbeResult:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate(timeout=10)
            raise RuntimeError(f"probe of {self.target} did not finish; killed") from None
        if self.proc.returncode != 0 or not out.strip():
            raise RuntimeError(
                f"probe of {self.target} failed ({self.proc.returncode}): {err.strip()}"
            )
        d = json.loads(out)
        return ProbeResult(
            target=d["target"],
            interval_s=d["interval_s"],
            duration_s=d["duration_s"],
            sent=d["sent"],
            replies=[(int(s), float(r)) for s, r in d["replies"]],
            http=[(float(a), float(b), bool(ok)) for a, b, ok in d["http"]],
            started_at=d["started_at"],
            tcp=d.get("tcp") or {},
        )


def start_probe(
    target: str,
    seconds: float,
    *,
    interval: float = 0.01,
    http: bool = False,
    tcp: bool = False,
    timeout: float = 1.0,
) -> RunningProbe:
    """Start probing `target` from `client` every `interval` s for at most `seconds` s.

    Bounded: count = seconds / interval (at most MAX_COUNT), time at most MAX_SECONDS.
    """
    _check_target(target)
    if not 0 < seconds <= MAX_SECONDS:
        raise ValueError(f"seconds must be in (0, {MAX_SECONDS}]")
    if interval < 0.002:
        raise ValueError("interval below 2 ms is not a probe, it is a flood")
    argv = [
        "nsenter",
        f"--net=/run/netns/{t.CLIENT}",
        "--",
        sys.executable,
        "-m",
        "lab.probe",
        "--target",
        target,
        "--seconds",
        str(seconds),
        "--interval",
        str(interval),
        "--timeout",
        str(timeout),
    ]
    if http:
        argv.append("--http")
    if tcp:
        argv.append("--tcp")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    rp = RunningProbe(proc, target)
    # Wait (bounded) until the worker's socket is open, so t=0 is "probing".
    deadline = time.monotonic() + 5
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        r, _, _ = select.select([proc.stderr], [], [], 0.1)
        if r:
            line = proc.stderr.readline()
            if "probing" in line or not line:
                break
    return rp


def probe(
    target: str, seconds: float, *, interval: float = 0.01, http: bool = False, tcp: bool = False
) -> ProbeResult:
    """Probe `target` for `seconds` s and return the timeline (blocking)."""
    return start_probe(target, seconds, interval=interval, http=http, tcp=tcp).wait(seconds + 15)


# --- the worker (runs inside client's network namespace) -------------------------


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def _echo(ident: int, seq: int) -> bytes:
    payload = b"glidepath-probe!" * 2
    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq & 0xFFFF)
    return struct.pack("!BBHHH", 8, 0, _checksum(hdr + payload), ident, seq & 0xFFFF) + payload


class StreamCheck:
    """Checks the guest's stream (lab/guest.py, cgi-bin/stream) as it arrives: an HTTP
    header, then the numbers 1, 2, 3, ... one per line. A lost, repeated or reordered
    byte shows as a line that is not the next number."""

    def __init__(self) -> None:
        self.numbers = 0
        self.error: str | None = None
        self._buffer = b""
        self._in_body = False

    def feed(self, data: bytes) -> None:
        if self.error:
            return
        self._buffer += data
        if not self._in_body:
            # busybox httpd passes a CGI's own header lines on with bare newlines.
            end = re.search(rb"\r?\n\r?\n", self._buffer)
            if end is None:
                return
            head, rest = self._buffer[: end.start()], self._buffer[end.end() :]
            if not head.startswith(b"HTTP/1.0 200") and not head.startswith(b"HTTP/1.1 200"):
                self.error = f"answered {head.splitlines()[0][:60]!r}"
                return
            self._in_body, self._buffer = True, rest
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            if line != str(self.numbers + 1).encode():
                self.error = f"after {self.numbers} came {line[:20]!r}, not {self.numbers + 1}"
                return
            self.numbers += 1


TCP_READ = 1024  # bytes per read, one read per probe interval: 100 KB/s at 10 ms
TCP_STALL_S = 5.0  # no data for this long: the stream counts as broken


def _tcp_stream(target: str, stop: threading.Event, interval: float) -> dict[str, object]:
    """One connection for the whole probe: read the stream at a steady pace until `stop`."""
    check = StreamCheck()
    longest_stall = 0.0
    try:
        sock = socket.create_connection((target, 80), timeout=TCP_STALL_S)
    except OSError as err:
        return {"error": f"connect: {err}", "numbers": 0, "longest_stall_ms": 0}
    with sock:
        sock.sendall(b"GET /cgi-bin/stream HTTP/1.0\r\nHost: guest\r\n\r\n")
        while not stop.is_set() and check.error is None:
            asked = time.monotonic()
            try:
                data = sock.recv(TCP_READ)
            except TimeoutError:
                check.error = f"no data for {TCP_STALL_S:.0f} s"
                break
            except OSError as err:  # ECONNRESET above all
                check.error = f"{type(err).__name__}: {err}"
                break
            longest_stall = max(longest_stall, time.monotonic() - asked)
            if not data:
                check.error = "closed by the guest"
                break
            check.feed(data)
            stop.wait(interval)
    if check.error is None and check.numbers == 0:
        check.error = "no number read"  # a stream that never started proves nothing
    return {
        "error": check.error,
        "numbers": check.numbers,
        "longest_stall_ms": round(longest_stall * 1000),
    }


def _worker(
    target: str,
    seconds: float,
    interval: float,
    use_http: bool,
    timeout: float,
    use_tcp: bool = False,
) -> dict[str, object]:
    _check_target(target)
    seconds = min(seconds, MAX_SECONDS)
    count = min(int(seconds / interval) + 1, MAX_COUNT)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    t0 = time.monotonic()
    started_at = time.time()
    replies: list[tuple[int, float]] = []
    http_log: list[tuple[float, float, bool]] = []

    def http_loop() -> None:
        n = 0
        while not stop.is_set() and n < count and time.monotonic() - t0 < seconds:
            a = time.monotonic() - t0
            ok = False
            try:
                c = http.client.HTTPConnection(target, 80, timeout=timeout)
                c.request("GET", "/")
                ok = c.getresponse().status == 200
                c.close()
            except (OSError, http.client.HTTPException):
                ok = False
            b = time.monotonic() - t0
            http_log.append((a, b, ok))
            n += 1
            time.sleep(max(0.0, interval - (b - a)))

    th = threading.Thread(target=http_loop, daemon=True) if use_http else None
    tcp_result: dict[str, object] = {}
    tcp_thread = (
        threading.Thread(
            target=lambda: tcp_result.update(_tcp_stream(target, stop, interval)), daemon=True
        )
        if use_tcp
        else None
    )
    print("probing", file=sys.stderr, flush=True)
    if th:
        th.start()
    if tcp_thread:
        tcp_thread.start()
    sent = 0
    next_send = 0.0
    end = seconds
    while not stop.is_set():
        now = time.monotonic() - t0
        if now >= end:
            break
        if now >= next_send and sent < count:
            # An error (e.g. no route for a moment) counts as a lost probe.
            with contextlib.suppress(OSError):
                sock.sendto(_echo(ident, sent), (target, 0))
            sent += 1
            next_send += interval
            if sent >= count:
                end = min(end, now + timeout)  # wait for the last replies, then stop
        wait = max(0.0, min(next_send, end) - (time.monotonic() - t0))
        r, _, _ = select.select([sock], [], [], wait)
        if not r:
            continue
        data = sock.recv(2048)
        ihl = (data[0] & 0x0F) * 4
        typ, _, _, rid, rseq = struct.unpack("!BBHHH", data[ihl : ihl + 8])
        if typ == 0 and rid == ident:
            replies.append((rseq, round(time.monotonic() - t0, 6)))
    duration = time.monotonic() - t0
    stop.set()
    if th:
        th.join(timeout + 1)
    if tcp_thread:
        tcp_thread.join(TCP_STALL_S + 1)
    return {
        "target": target,
        "interval_s": interval,
        "duration_s": round(duration, 6),
        "sent": sent,
        "replies": replies,
        "http": list(http_log),
        "started_at": started_at,
        "tcp": tcp_result,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab.probe")
    p.add_argument("--target", required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--interval", type=float, default=0.01)
    p.add_argument("--timeout", type=float, default=1.0)
    p.add_argument("--http", action="store_true")
    p.add_argument("--tcp", action="store_true", help="one TCP stream, every byte checked")
    a = p.parse_args(argv)
    res = _worker(a.target, a.seconds, a.interval, a.http, a.timeout, a.tcp)
    # Done probing: a late SIGTERM (the caller stopping a probe that already ended) must
    # not interrupt writing the result into a full pipe (it cut a 1 MB result at 64 KiB).
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
