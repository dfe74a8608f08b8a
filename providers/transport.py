"""The one way glidepath reaches a host: SSH with verified host keys and argv commands.

Every command is an argv list; `quote_argv` is the only place it becomes a string
(the remote sshd hands that string to the login shell, so each argument is quoted).
Host keys are checked against the known_hosts text from the stack config: an unknown or
changed key is refused with a clear error. One connection per host is kept per provider
process and shared by the (at most four) provider calls the engine runs at once.
"""

from __future__ import annotations

import contextlib
import io
import posixpath
import secrets
import shlex
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from providers import known_hosts as known_hosts_text
from providers.schema.host import DEFAULT_PORT, DEFAULT_USER

# paramiko (0.1 s to import) is loaded by the functions that open a connection, not here:
# the program imports this module on every run and connects only when it must read a host.
if TYPE_CHECKING:
    import paramiko

CONNECT_ATTEMPTS = 3
CONNECT_TIMEOUT_S = 10.0
DEFAULT_COMMAND_TIMEOUT_S = 120.0


class TransportError(RuntimeError):
    """A host could not be reached or refused us; the message says what to fix."""


class HostKeyError(TransportError):
    """The host's key is not in known_hosts, or differs from the one recorded there."""


@dataclass(frozen=True)
class Endpoint:
    """Where a host's sshd listens. Plain data: it is stored in resource outputs."""

    name: str
    address: str
    port: int = DEFAULT_PORT
    user: str = DEFAULT_USER

    def describe(self) -> str:
        return f"{self.name} ({self.user}@{self.address}:{self.port})"


@dataclass(frozen=True)
class SshCredentials:
    """The client key and the known_hosts text. Never printed, never stored in state."""

    private_key: str = field(repr=False)
    known_hosts: str = field(repr=False)


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


class RunningCommand:
    """A command started with `SshSession.start`; read its stderr, wait for its end."""

    def __init__(self, host: str, argv: tuple[str, ...], channel: paramiko.Channel) -> None:
        self.host, self.argv, self.channel = host, argv, channel
        self.stderr = ""
        self._stdout = ""

    def wait_for_stderr(self, text: str, timeout: float) -> bool:
        """True once `text` appeared on stderr; False at the timeout or the command's end."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.channel.recv_stderr_ready():
                self.stderr += self.channel.recv_stderr(4096).decode(errors="replace")
                if text in self.stderr:
                    return True
            elif self.channel.exit_status_ready():
                return False
            else:
                time.sleep(0.005)
        return False

    def next_line(self, timeout: float) -> str | None:
        """The next line of stdout, or None at the timeout or the end of the output."""
        deadline = time.monotonic() + timeout
        while "\n" not in self._stdout:
            if time.monotonic() >= deadline:
                return None
            if self.channel.recv_ready():
                chunk = self.channel.recv(4096)
                if not chunk:
                    return None
                self._stdout += chunk.decode(errors="replace")
            elif self.channel.exit_status_ready() and not self.channel.recv_ready():
                return None
            else:
                time.sleep(0.001)
        line, self._stdout = self._stdout.split("\n", 1)
        return line

    def wait(self, timeout: float) -> int | None:
        """The exit status, or None if still running at the timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.channel.exit_status_ready():
                return self.channel.recv_exit_status()
            time.sleep(0.002)
        return None

    def close(self) -> None:
        self.channel.close()


class CommandError(RuntimeError):
    """A command exited non-zero; carries the host, the argv and what it printed."""

    def __init__(self, host: str, result: CommandResult) -> None:
        self.host = host
        self.result = result
        output = (result.stderr or result.stdout).strip()
        super().__init__(
            f"{host}: `{quote_argv(result.argv)}` exited {result.exit_status}"
            + (f": {output}" if output else "")
        )


def quote_argv(argv: Sequence[str]) -> str:
    """The single quoting point: argv -> a string the remote shell splits back into argv."""
    if not argv:
        raise ValueError("empty command")
    for arg in argv:
        if not isinstance(arg, str):
            raise TypeError(f"command arguments must be strings, got {arg!r}")
        if "\x00" in arg:
            raise ValueError("command arguments cannot contain NUL")
    return " ".join(shlex.quote(arg) for arg in argv)


def _load_private_key(text: str) -> paramiko.PKey:
    import paramiko

    for key_class in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return key_class.from_private_key(io.StringIO(text))
        except paramiko.SSHException:
            continue
    raise TransportError(
        "glidepath:ssh.private_key is not an unencrypted OpenSSH/PEM private key "
        "(ed25519, ecdsa or rsa)"
    )


known_hosts_name = known_hosts_text.name_for


def has_host_key(known_hosts: str, address: str, port: int) -> bool:
    """True if the known_hosts text holds a key for this host (hashed names included)."""
    return bool(known_hosts_text.keys_of(known_hosts, known_hosts_name(address, port)))


def host_key_line(known_hosts: str, address: str, port: int) -> str | None:
    """`keytype base64` of this host's key in known_hosts (hashed names included), for a
    client that pins exactly one key; ed25519 where the host has several."""
    found = known_hosts_text.keys_of(known_hosts, known_hosts_name(address, port))
    if not found:
        return None
    keytype = "ssh-ed25519" if "ssh-ed25519" in found else sorted(found)[0]
    return f"{keytype} {found[keytype]}"


def _host_keys(known_hosts: str) -> paramiko.HostKeys:
    """The keys a connection trusts, parsed by paramiko: the parser that decides."""
    import paramiko

    keys = paramiko.HostKeys()
    for line in known_hosts.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        entry = paramiko.hostkeys.HostKeyEntry.from_line(line)
        if entry is not None:
            for hostname in entry.hostnames:
                keys.add(hostname, entry.key.get_name(), entry.key)
    return keys


class SshSession:
    """One authenticated connection to one host, safe to share between threads."""

    def __init__(self, endpoint: Endpoint, credentials: SshCredentials) -> None:
        self.endpoint = endpoint
        self._credentials = credentials
        self._client: paramiko.SSHClient | None = None
        self._lock = threading.Lock()
        self.connections_opened = 0

    def _connect(self) -> paramiko.SSHClient:
        import paramiko

        endpoint = self.endpoint
        known = _host_keys(self._credentials.known_hosts)
        lookup = known_hosts_name(endpoint.address, endpoint.port)
        if known.lookup(lookup) is None:
            raise HostKeyError(
                f"{endpoint.describe()}: no host key for {lookup} in glidepath:ssh.known_hosts; "
                "add the host's key (ssh-keyscan, checked out of band) before connecting"
            )
        key = _load_private_key(self._credentials.private_key)
        last_error: Exception | None = None
        for attempt in range(CONNECT_ATTEMPTS):
            client = paramiko.SSHClient()
            trusted = client.get_host_keys()  # empty: only the configured keys are trusted
            for hostname, keys in known.items():
                for key_type, host_key in keys.items():
                    trusted.add(hostname, key_type, host_key)
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
            try:
                client.connect(
                    endpoint.address,
                    port=endpoint.port,
                    username=endpoint.user,
                    pkey=key,
                    timeout=CONNECT_TIMEOUT_S,
                    banner_timeout=CONNECT_TIMEOUT_S,
                    auth_timeout=CONNECT_TIMEOUT_S,
                    allow_agent=False,
                    look_for_keys=False,
                )
            except paramiko.BadHostKeyException as err:
                client.close()
                raise HostKeyError(
                    f"{endpoint.describe()}: host key CHANGED (got {err.key.get_name()} "
                    f"{err.key.get_base64()[:16]}..., known_hosts has another); refusing to "
                    "connect. If the host was reinstalled, update glidepath:ssh.known_hosts."
                ) from err
            except paramiko.AuthenticationException as err:
                client.close()
                raise TransportError(
                    f"{endpoint.describe()}: authentication failed with glidepath:ssh.private_key"
                ) from err
            except (TimeoutError, OSError, paramiko.SSHException) as err:
                client.close()
                last_error = err
                if attempt + 1 < CONNECT_ATTEMPTS:
                    time.sleep(0.5 * 2**attempt)
                continue
            transport = client.get_transport()
            if transport is not None:
                transport.set_keepalive(15)
                # Each command is a few small messages each way: without this, Nagle's
                # algorithm meets the host's delayed ACK and every command waits ~40 ms.
                if isinstance(transport.sock, socket.socket):
                    transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.connections_opened += 1
            return client
        raise TransportError(
            f"{endpoint.describe()}: unreachable after {CONNECT_ATTEMPTS} attempts: {last_error}"
        )

    def connect_quietly(self) -> None:
        """Open the connection now if it is not open; an error is left to the first
        command, which reports it (a warm-up must not fail anything by itself)."""
        with contextlib.suppress(Exception):
            self._get_client()

    def _get_client(self) -> paramiko.SSHClient:
        with self._lock:
            transport = self._client.get_transport() if self._client else None
            if self._client is None or transport is None or not transport.is_active():
                self._client = self._connect()
            return self._client

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        stdin: str | bytes | None = None,
        timeout: float = DEFAULT_COMMAND_TIMEOUT_S,
    ) -> CommandResult:
        """Run argv on the host. check=True raises CommandError on a non-zero exit."""
        command = quote_argv(argv)
        if stdin is None:
            command += " </dev/null"  # the host's shell gives it an empty stdin
        channel = self._channel()
        # A bare channel, not exec_command's file objects: the stdin file sends an EOF
        # when it is garbage-collected, and an EOF that reaches sshd after a fast command
        # has ended and its channel is freed makes sshd drop the whole connection ("ieof
        # packet referred to nonexistent channel"), failing every call sharing it.
        channel.settimeout(timeout)
        channel.exec_command(command)
        if stdin is not None:
            channel.sendall(stdin.encode() if isinstance(stdin, str) else stdin)
            channel.shutdown_write()  # the command reads until it: it cannot have ended
        try:
            stdout = channel.makefile("rb").read().decode(errors="replace")
            stderr = channel.makefile_stderr("rb").read().decode(errors="replace")
        except TimeoutError as err:
            channel.close()
            raise TransportError(
                f"{self.endpoint.name}: `{command}` gave no output for {timeout:.0f} s"
            ) from err
        status = channel.recv_exit_status()
        channel.close()
        result = CommandResult(tuple(argv), status, stdout, stderr)
        if check and status != 0:
            raise CommandError(self.endpoint.name, result)
        return result

    def _open_channel(self) -> paramiko.Channel:
        import paramiko

        transport = self._get_client().get_transport()
        if transport is None:
            raise paramiko.SSHException("no transport")
        return transport.open_session(timeout=CONNECT_TIMEOUT_S)

    def _channel(self) -> paramiko.Channel:
        """A new channel on the shared connection. A connection that died since the last
        call (closed, or reset: paramiko then raises the socket's OSError) is reopened
        once; what fails after that names the host."""
        import paramiko

        try:
            return self._open_channel()
        except (paramiko.SSHException, OSError, EOFError):
            with self._lock:
                if self._client is not None:
                    self._client.close()
                self._client = None
        try:
            return self._open_channel()
        except (paramiko.SSHException, OSError, EOFError) as err:
            raise TransportError(f"{self.endpoint.describe()}: connection lost: {err}") from err

    def start(self, argv: Sequence[str]) -> RunningCommand:
        """Start argv and return at once (for a watcher such as tcpdump)."""
        channel = self._channel()
        channel.exec_command(quote_argv(argv))
        return RunningCommand(self.endpoint.name, tuple(argv), channel)

    def read_file(self, path: str) -> str | None:
        """A file's content, or None if it does not exist."""
        result = self.run(["cat", "--", path], check=False)
        if result.ok:
            return result.stdout
        if "No such file" in result.stderr:
            return None
        raise CommandError(self.endpoint.name, result)

    def write_file(self, path: str, content: str, mode: str = "0644") -> None:
        """Replace a file atomically: readers see the old or the new content, never half.

        A file that is itself a mount point (a bind-mounted /etc/hosts or rt_tables, as in
        containers and the lab's hosts) cannot be renamed over (EBUSY): it is then
        rewritten in place, the only way to change it.
        """
        # A name of its own per write: two writers never share a temporary file (the lab's
        # hosts share /etc/iproute2, and two networks may rewrite one host's rt_tables).
        # Hidden (a leading '.'): whatever reads the directory's files by `*` (the
        # vif-route script reading each stack's file of routes) never sees a half one.
        directory, name = posixpath.split(path)
        temporary = posixpath.join(directory, f".{name}.glidepath-{secrets.token_hex(6)}")
        self.run(["install", "-D", "-m", mode, "/dev/stdin", temporary], stdin=content)
        moved = self.run(["mv", "-f", "--", temporary, path], check=False)
        if moved.ok:
            return
        try:
            if "Device or resource busy" not in moved.stderr:
                raise CommandError(self.endpoint.name, moved)
            self.run(["cp", "--", temporary, path])  # cp keeps the mounted inode
            self.run(["chmod", "--", mode, path])
        finally:
            self.run(["rm", "-f", "--", temporary], check=False)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


_sessions: dict[tuple[str, int, str], SshSession] = {}
_sessions_lock = threading.Lock()


def session(endpoint: Endpoint, credentials: SshCredentials) -> SshSession:
    """The process-wide session for this host (one connection per host per process)."""
    key = (endpoint.address, endpoint.port, endpoint.user)
    with _sessions_lock:
        existing = _sessions.get(key)
        if existing is None:
            existing = _sessions[key] = SshSession(endpoint, credentials)
        return existing


def warm_up(endpoint: Endpoint, credentials: SshCredentials) -> None:
    """Open this host's process-wide session in the background, ahead of its first use."""
    target = session(endpoint, credentials)
    threading.Thread(
        target=target.connect_quietly, name=f"warm-up-{endpoint.name}", daemon=True
    ).start()


def close_all() -> None:
    with _sessions_lock:
        for existing in _sessions.values():
            existing.close()
        _sessions.clear()


def credentials_from_config(ssh_config: Any) -> SshCredentials:
    """`glidepath:ssh` as the provider's configure() receives it (a dict or its JSON).

    The key comes from `private_key` (a Pulumi secret) or `private_key_path` (a key file
    on the machine running Pulumi, like `ssh -i`; the lab uses this since its key is
    made at `lab up`); host keys from `known_hosts` (text) or `known_hosts_path`.
    """
    import json
    from pathlib import Path

    if isinstance(ssh_config, str):
        ssh_config = json.loads(ssh_config)
    if not isinstance(ssh_config, dict):
        raise TransportError(
            "glidepath:ssh is not set: it needs private_key (a secret) or private_key_path, "
            "and known_hosts or known_hosts_path"
        )

    def text(inline: str, path_key: str, what: str) -> str:
        if ssh_config.get(inline):
            return str(ssh_config[inline])
        if ssh_config.get(path_key):
            try:
                return Path(str(ssh_config[path_key])).read_text()
            except OSError as err:
                raise TransportError(f"glidepath:ssh.{path_key}: {err}") from err
        raise TransportError(f"glidepath:ssh.{inline} is missing: {what}")

    return SshCredentials(
        private_key=text(
            "private_key",
            "private_key_path",
            "set it as a secret (pulumi config set --secret --path glidepath:ssh.private_key)",
        ),
        known_hosts=text("known_hosts", "known_hosts_path", "the hosts' public keys"),
    )
