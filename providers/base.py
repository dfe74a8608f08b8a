"""What every host-network provider shares: the SSH credentials from the stack config,
the host endpoint stored in each resource, and the check/diff plumbing.

A provider object is pickled into state, so it keeps no live data: credentials arrive
through `configure` in the provider process and sessions live in `transport`'s cache.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pulumi.dynamic import CheckResult, ConfigureRequest, DiffResult, ResourceProvider

from providers import transport, validate
from providers.plans import Plan
from providers.transport import Endpoint, SshCredentials, SshSession

#: Every changing step glidepath ran, per host, in this process: (host, step). Tests use it
#: to prove that applying an already-applied resource runs nothing.
applied_log: list[tuple[str, tuple[str, ...]]] = []


def still_adopted(plan: Plan, previous: object, props: dict[str, Any]) -> bool:
    """An artifact stays "adopted" (found on the host, so left there on delete) while
    glidepath has never had to change it: nothing ran now, and it was adopted at create
    (`previous` is None on create, the stored fields on update)."""
    return not plan and (previous is None or bool(props.get("adopted")))


def apply(session: SshSession, plan: Plan) -> None:
    """Run a plan: its file writes, then its commands, stopping at the first failure."""
    for write in plan.writes:
        applied_log.append((session.endpoint.name, ("write", write.path)))
        session.write_file(write.path, write.content, write.mode)
    for argv in plan.commands:
        applied_log.append((session.endpoint.name, argv))
        session.run(argv)


def parse_endpoint(value: Any) -> dict[str, Any]:
    """The `host` input: {name, address, port, user}, canonicalised."""
    if not isinstance(value, dict):
        raise validate.Invalid("must be an object {name, address, port, user}")
    unknown = set(value) - {"name", "address", "port", "user"}
    if unknown:
        raise validate.Invalid(f"unknown fields {sorted(unknown)}")
    return {
        "name": validate.name(value.get("name"), "host name"),
        "address": validate.address(value.get("address")),
        "port": validate.integer(value.get("port", 22), 1, 65535),
        "user": validate.name(value.get("user", "root"), "SSH user"),
    }


def endpoint_of(props: dict[str, Any], key: str = "host") -> Endpoint:
    host = props[key]
    return Endpoint(
        host["name"], host["address"], int(host.get("port", 22)), host.get("user", "root")
    )


def _canonicalising(method: Any) -> Any:
    import functools

    @functools.wraps(method)
    def wrapper(self: HostProvider, *args: Any) -> Any:
        # (props), (id, props) or (id, olds, news): the dicts are the last one or two.
        converted = [self.canonical(a) if isinstance(a, dict) else a for a in args]
        return method(self, *converted)

    return wrapper


class HostProvider(ResourceProvider):
    """Base for providers that act on one host over SSH."""

    #: Input fields whose change means a different thing on the host: replace, not update.
    identity: tuple[str, ...] = ("host",)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The engine hands every number over as a float (201 arrives as 201.0), also in
        # the inputs that `check` canonicalised. Canonicalise again on the way in, so
        # create/update/read/delete see the same values `check` produced.
        for method in ("create", "update", "read", "delete"):
            if method in cls.__dict__:
                setattr(cls, method, _canonicalising(cls.__dict__[method]))

    def canonical(self, props: dict[str, Any]) -> dict[str, Any]:
        """Props with every input field re-parsed by `check` (other fields kept as they are)."""
        return dict(self.check({}, props).inputs)

    def __init__(self) -> None:
        self._credentials: SshCredentials | None = None
        self._credentials_error: str | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Never pickle credentials into state, whatever happened before pickling.
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]

    def configure(self, req: ConfigureRequest) -> None:
        try:
            self._credentials = transport.credentials_from_config(req.config.get("ssh"))
        except transport.TransportError as err:
            # Reported when a host is first needed, so a preview that needs none still runs.
            self._credentials_error = str(err)

    def use_credentials(self, credentials: SshCredentials) -> None:
        """For direct provider tests: what configure() would have set."""
        self._credentials = credentials

    def session(self, props: dict[str, Any], key: str = "host") -> SshSession:
        if self._credentials is None:
            raise transport.TransportError(
                self._credentials_error or "glidepath:ssh is not configured for this stack"
            )
        return transport.session(endpoint_of(props, key), self._credentials)

    def check_inputs(self, checker: validate.Checker) -> None:
        """Subclasses validate their fields here (the host is validated for them)."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        checker = validate.Checker(news)
        for key in self.endpoint_fields():
            checker.field(key, parse_endpoint)
        self.check_inputs(checker)
        return CheckResult(checker.inputs, checker.failures)

    def endpoint_fields(self) -> Iterable[str]:
        return ("host",)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        fields = self.diffed_fields(news)
        changes = [k for k in fields if olds.get(k) != news.get(k)]
        replaces = [k for k in changes if k in self.identity]
        return DiffResult(
            changes=bool(changes),
            replaces=replaces,
            delete_before_replace=bool(replaces) and self.delete_before_replace(),
        )

    def diffed_fields(self, news: dict[str, Any]) -> list[str]:
        return [k for k in news if not k.startswith("__")]

    def delete_before_replace(self) -> bool:
        """True where old and new would be the same host artifact (same key, same rule)."""
        return True
