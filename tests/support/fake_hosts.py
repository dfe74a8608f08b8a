"""Stand-ins for a host's SSH session in unit tests: scripted command results, and a
record of what ran (argv lists) and which files were written."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from providers.transport import CommandError, CommandResult, Endpoint, SshCredentials, SshSession


class FakeSession(SshSession):
    """Answers `run` from `replies` (argv -> (exit status, stdout) or (exit status,
    stdout, stderr)); any other command succeeds with no output. `fail` lists argv whose
    `run` raises, as a lost host would. It never connects anywhere."""

    def __init__(
        self,
        name: str = "host",
        replies: Mapping[tuple[str, ...], tuple[int, str] | tuple[int, str, str]] | None = None,
        fail: Sequence[tuple[str, ...]] = (),
    ) -> None:
        super().__init__(Endpoint(name, "192.0.2.1"), SshCredentials("", ""))
        self.replies = dict(replies or {})
        self.fail = list(fail)
        self.ran: list[tuple[str, ...]] = []
        self.written: dict[str, tuple[str, str]] = {}

    def run(self, argv: Sequence[str], *, check: bool = True, **_: Any) -> CommandResult:
        command = tuple(argv)
        self.ran.append(command)
        if command in self.fail:
            raise OSError(f"{self.endpoint.name}: connection lost")
        status, stdout, *stderr = self.replies.get(command, (0, ""))
        result = CommandResult(command, status, stdout, "".join(stderr))
        if check and not result.ok:
            raise CommandError(self.endpoint.name, result)
        return result

    def write_file(self, path: str, content: str, mode: str = "0644") -> None:
        self.written[path] = (content, mode)
