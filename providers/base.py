"""What every host-network provider shares: the SSH credentials from the stack config,
the host endpoint stored in each resource, the check/diff plumbing, and the engine's
entry points with the one converge path that create and update take.

Each entry point first re-canonicalises its inputs (`canonical`), then:

    create, update   converge: facts -> plan -> apply -> read back -> verify -> keep -> outputs
    read             observe: the outputs as the host has them now, or None when gone
    delete           remove: from the stored outputs alone

A provider fills in the hooks for its artifact:

    facts(session, props) -> Found        what the plan needs, read from the host
    plan(props, found, olds) -> Plans     yields the plans to apply, in order
    read_back(session, props, before)     the facts after applying (default: `facts` again)
    verify(props, found) -> str | None    what the host still lacks after applying
    keep(session, done)                   its persisted form, restored at boot (providers/boot)
    outputs(done) -> dict                 the outputs to store (`done`: a `Converged`)
    resource_id(outputs) -> str
    observe(session, props), remove(session, props)

`olds` is None on create and the stored outputs on update. A provider whose converge does
not fit these steps (Tunnel: two hosts, a supervisor to stop first and to wait for)
overrides `converge` itself and keeps the rest.

`check` validates the inputs with the provider's `schema`, its model in providers/schema/
(the same the stack config is built from, so each bound and default is spelled once there).

A provider object is pickled into state, so it keeps no live data: credentials arrive
through `configure` in the provider process and sessions live in `transport`'s cache.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Generic, TypeVar

from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    ConfigureRequest,
    CreateResult,
    DiffResult,
    ReadResult,
    ResourceProvider,
    UpdateResult,
)
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from providers import transport, validate
from providers.plans import Plan
from providers.schema.errors import problems
from providers.schema.fields import ResourceArgs
from providers.transport import Endpoint, SshCredentials, SshSession

#: Every changing step glidepath ran, per host, in this process: (host, step). Tests use it
#: to prove that applying an already-applied resource runs nothing.
applied_log: list[tuple[str, tuple[str, ...]]] = []


#: What a provider's facts hook returns (and its plan, verify and outputs hooks take).
Found = TypeVar("Found")
#: The plans of one converge, applied in order as they are yielded.
Plans = Iterator[Plan]


@dataclass(frozen=True)
class Converged(Generic[Found]):
    """What one converge saw and did, for the outputs hook."""

    props: dict[str, Any]  # the canonical inputs
    olds: dict[str, Any] | None  # the stored outputs on update, None on create
    before: Found  # the facts the plans were made from
    after: Found  # the facts read back after applying, verified
    changed: bool  # whether any plan had a step to run


def still_adopted(changed: bool, previous: object, olds: dict[str, Any] | None) -> bool:
    """An artifact stays "adopted" (found on the host, so left there on delete) while
    glidepath has never had to change it: nothing ran now, and it was adopted at create
    (`previous` is None on create, the stored fields on update; `olds` the stored outputs)."""
    return not changed and (previous is None or bool(olds and olds.get("adopted")))


def apply(session: SshSession, plan: Plan) -> None:
    """Run a plan: its file writes, then its commands, stopping at the first failure."""
    for write in plan.writes:
        applied_log.append((session.endpoint.name, ("write", write.path)))
        session.write_file(write.path, write.content, write.mode)
    for argv in plan.commands:
        applied_log.append((session.endpoint.name, argv))
        session.run(argv)


def endpoint_of(props: dict[str, Any], key: str = "host") -> Endpoint:
    """The endpoint of `props[key]`, as `check` canonicalised it."""
    host = props[key]
    return Endpoint(host["name"], host["address"], int(host["port"]), host["user"])


def check_with(
    schema: type[ResourceArgs], news: dict[str, Any]
) -> tuple[dict[str, Any], list[CheckFailure]]:
    """`news` validated with `schema`: the canonical inputs (defaults filled in, the outputs
    stored beside them kept as they are) and one failure per wrong field, named as the
    input names it (a nested field's path in the reason: `host.port: ...`).

    A field not known until `up` (the engine's preview sentinel, anywhere in it) is left as
    it is, and so is every rule between fields: `up` checks them again. Where some field is
    wrong, the others are still canonical (`canonical` reads stored outputs that a refresh
    may have made invalid, such as a Tunnel's `state: down`)."""
    unknown = {key for key, value in news.items() if validate.has_unknown(value)}
    known = {key: value for key, value in news.items() if key not in unknown}
    try:
        inputs = schema.model_validate(known).model_dump()
        errors: list[ErrorDetails] = []
    except ValidationError as err:
        errors = [e for e in err.errors() if not _waits(e, unknown)]
        inputs = {**known, **_each_field(schema, known)}
    inputs.update((key, news[key]) for key in unknown)
    reasons: dict[str, list[str]] = {}
    for path, reason in problems(schema, errors):
        field = re.split(r"[.\[]", path, maxsplit=1)[0]
        reasons.setdefault(field, []).append(f"{path}: {reason}" if path else reason)
    return inputs, [CheckFailure(field, "; ".join(why)) for field, why in reasons.items()]


def _waits(error: ErrorDetails, unknown: set[str]) -> bool:
    """An error that may be gone once the unknown fields are known: in one of them, or a
    rule between fields (a model's own check, at its root), which saw a default in their
    place."""
    return bool(unknown) and (not error["loc"] or error["loc"][0] in unknown)


@functools.cache
def _adapters(schema: type[BaseModel]) -> dict[str, TypeAdapter[Any]]:
    """Each field of `schema` on its own, for `_each_field`."""
    return {
        name: TypeAdapter(Annotated[info.annotation, info])
        for name, info in schema.model_fields.items()
    }


def _each_field(schema: type[BaseModel], known: dict[str, Any]) -> dict[str, Any]:
    """Each field of `known` that is valid on its own, canonical; the defaults of those
    not given."""
    canonical = {}
    for name, adapter in _adapters(schema).items():
        info, value = schema.model_fields[name], known.get(name)
        if value is None:
            if not info.is_required():
                default = info.get_default(call_default_factory=True, validated_data={})
                canonical[name] = adapter.dump_python(default)
            continue
        try:
            canonical[name] = adapter.dump_python(adapter.validate_python(value))
        except ValidationError:
            continue  # kept as given: its failure says why
    return canonical


class HostProvider(ResourceProvider, Generic[Found]):
    """Base for providers that act on one host over SSH: the entry points and the converge
    path here, the hooks in each provider (see the module docstring)."""

    #: Input fields whose change means a different thing on the host: replace, not update.
    identity: tuple[str, ...] = ("host",)
    #: The inputs' model (providers/schema/), which `check` validates them with: the one
    #: place each rule and default is spelled, shared with the stack config's parser.
    schema: ClassVar[type[ResourceArgs]]

    def canonical(self, props: dict[str, Any]) -> dict[str, Any]:
        """Props with every input field re-parsed by `check` (other fields kept as they are).

        The engine hands every number over as a float (201 arrives as 201.0), also in the
        inputs that `check` canonicalised; each entry point calls this first, so the hooks
        see the same values `check` produced."""
        return dict(self.check({}, props).inputs)

    # --- the engine's entry points ------------------------------------------------------

    def create(self, props: dict[str, Any]) -> CreateResult:
        props = self.canonical(props)
        outputs = self.converge(self.session(props), props, None)
        return CreateResult(self.resource_id(outputs), outputs)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        olds, news = self.canonical(olds), self.canonical(news)
        return UpdateResult(self.converge(self.session(news), news, olds))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        props = self.canonical(props)
        outputs = self.observe(self.session(props), props)
        if outputs is None:
            return ReadResult("", {})  # gone from the host: refresh drops the resource
        return ReadResult(id_, outputs)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        props = self.canonical(props)
        self.remove(self.session(props), props)

    # --- the converge path and its hooks ------------------------------------------------

    def converge(
        self, session: SshSession, props: dict[str, Any], olds: dict[str, Any] | None
    ) -> dict[str, Any]:
        """Make the host hold `props` and return the outputs. `olds` are the stored
        outputs on update, None on create."""
        before = self.facts(session, props)
        changed = False
        for plan in self.plan(props, before, olds):
            apply(session, plan)
            changed = changed or bool(plan)
        after = self.read_back(session, props, before)
        missing = self.verify(props, after)
        if missing:
            raise RuntimeError(f"{session.endpoint.name}: {missing}")
        done = Converged(props, olds, before, after, changed)
        self.keep(session, done)
        return self.outputs(done)

    def keep(self, session: SshSession, done: Converged[Found]) -> None:
        """After applying: make the host put the artifact back at boot (providers/boot),
        where the OS would not. Default: nothing (a file, which the OS keeps)."""

    def facts(self, session: SshSession, props: dict[str, Any]) -> Found:
        """What the plan needs to know about the host, read afresh."""
        raise NotImplementedError

    def plan(self, props: dict[str, Any], found: Found, olds: dict[str, Any] | None) -> Plans:
        """Yield the plans that bring the host to `props`; each is applied before the
        next one is made."""
        raise NotImplementedError

    def read_back(self, session: SshSession, props: dict[str, Any], before: Found) -> Found:
        """The facts after applying, for `verify` and `outputs`."""
        return self.facts(session, props)

    def verify(self, props: dict[str, Any], found: Found) -> str | None:
        """What the host still lacks after applying (the error says so), or None."""
        raise NotImplementedError

    def outputs(self, done: Converged[Found]) -> dict[str, Any]:
        """The outputs to store: the inputs, plus what was found and done."""
        raise NotImplementedError

    def resource_id(self, outputs: dict[str, Any]) -> str:
        raise NotImplementedError

    def observe(self, session: SshSession, props: dict[str, Any]) -> dict[str, Any] | None:
        """For `read`: the outputs as the host has them now (refresh shows the difference
        as drift), or None when the artifact is gone."""
        raise NotImplementedError

    def remove(self, session: SshSession, props: dict[str, Any]) -> None:
        """For `delete`: remove the artifact, from the stored outputs alone."""
        raise NotImplementedError

    # --- SSH ----------------------------------------------------------------------------

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

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        inputs, failures = check_with(self.schema, news)
        if not failures:
            inputs.update(self.derived(inputs))
        return CheckResult(inputs, failures)

    def derived(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Fields `check` adds to valid inputs, derived from them (MangleMark's `copies`)."""
        return {}

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
