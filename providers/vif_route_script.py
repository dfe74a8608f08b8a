"""VifRouteScript: the blog's /etc/libvirt/scripts/vif-route on a host, generated from the
stack's VMs (vif name -> VM address), so that whichever host a VM runs on, libvirt's
script routes its /32 to its tap, enables proxy_arp and sets proxy_delay 0.

Identity is (host, path); a change of the routes is an update (the file is rewritten in
place, atomically). A replace writes the new file before removing the old one: they are
different files, and a host should never be left without the script libvirt calls.

`sha256` and `mode` are derived: check sets what the file must be, read reports what it
is, so a hand edit or a lost exec bit shows as drift and `up` rewrites the file.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping
from typing import Any, NamedTuple

import pulumi
from pulumi.dynamic import Resource

from providers import validate
from providers.base import Converged, HostProvider, Plans, apply
from providers.facts import vif_route_script as facts
from providers.plans import PlanError
from providers.plans import vif_route_script as plans
from providers.transport import SshSession

DEFAULT_PATH = "/etc/libvirt/scripts/vif-route"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def parse_path(value: Any) -> str:
    if not isinstance(value, str):
        raise validate.Invalid(f"must be an absolute path, got {value!r}")
    try:
        return plans.check_path(value)
    except PlanError as err:
        raise validate.Invalid(str(err)) from err


def parse_routes(value: Any) -> dict[str, str]:
    """{vif: VM IPv4 address}, canonical (sorted by vif); one address per vif and VM."""
    if not isinstance(value, Mapping):
        raise validate.Invalid(f"must be a mapping of vif name to VM address, got {value!r}")
    routes: dict[str, str] = {}
    owner: dict[str, str] = {}
    for vif in sorted(value, key=str):
        name = validate.interface_name(vif)  # no wildcard: one tap, one VM
        address = validate.address(value[vif])
        if ipaddress.ip_address(address).version != 4:
            raise validate.Invalid(f"{vif}: {address} is IPv6; the script routes IPv4 (/32)")
        if address in owner:
            raise validate.Invalid(f"{owner[address]} and {vif} both route {address}")
        owner[address] = name
        routes[name] = address
    return routes


def _has_unknown(value: Any) -> bool:
    if isinstance(value, Mapping):
        return any(validate.is_unknown(k) or _has_unknown(v) for k, v in value.items())
    return validate.is_unknown(value)


def _mode(stat_mode: str) -> str:
    return f"{int(stat_mode, 8):04o}"


class _Found(NamedTuple):
    stat: dict[str, facts.Stat]  # the script and its directory, those that exist
    content: str | None  # the script, if it is a regular file

    def mode(self, path: str) -> str | None:
        """The file's mode as `0755`, or None when it does not exist."""
        return _mode(self.stat[path]["mode"]) if path in self.stat else None


class VifRouteScriptProvider(HostProvider[_Found]):
    identity = ("host", "path")

    def check_inputs(self, checker: validate.Checker) -> None:
        path = checker.field("path", parse_path, default=DEFAULT_PATH)
        raw_routes = checker.news.get("routes")
        if _has_unknown(raw_routes):
            return  # a VM's address known only at `up`: checked then
        routes = checker.field("routes", parse_routes)
        if path is not None and routes is not None:
            # Derived, not given: what the file must hold, compared with what read finds.
            checker.inputs["sha256"] = sha256(plans.render(path, routes))
            checker.inputs["mode"] = plans.MODE

    def diffed_fields(self, news: dict[str, Any]) -> list[str]:
        return ["host", "path", "routes", "sha256", "mode"]

    def delete_before_replace(self) -> bool:
        return False  # a new path or host is another file: write it first

    def facts(self, session: SshSession, props: dict[str, Any]) -> _Found:
        path = props["path"]
        directory = plans.directory_of(path)
        found = facts.process_stat(session.run(facts.stat_command(directory, path), check=False))
        stat = found.get(path)
        is_file = stat is not None and stat["kind"].startswith("regular")
        return _Found(found, session.read_file(path) if is_file else None)

    def plan(self, props: dict[str, Any], found: _Found, olds: dict[str, Any] | None) -> Plans:
        path = props["path"]
        directory = plans.directory_of(path)
        directory_stat = found.stat.get(directory)
        yield plans.plan_directory(directory, directory_stat and directory_stat["kind"])
        stat = found.stat.get(path)
        yield plans.plan_write(
            path,
            props["routes"],
            found.content,
            stat["mode"] if stat else None,
            stat["kind"] if stat else None,
        )

    def verify(self, props: dict[str, Any], found: _Found) -> str | None:
        path = props["path"]
        mode = found.mode(path)
        if found.content == plans.render(path, props["routes"]) and mode == plans.MODE:
            return None
        return f"{path} does not hold the generated script after writing it (mode {mode})"

    def outputs(self, done: Converged[_Found]) -> dict[str, Any]:
        path, routes = done.props["path"], done.props["routes"]
        desired = plans.render(path, routes)
        outs = {
            **done.props,
            "routes": dict(routes),
            "sha256": sha256(desired),
            "mode": done.after.mode(path),
        }
        if done.olds is not None:
            outs["previous"] = done.olds.get("previous")
            outs["previous_mode"] = done.olds.get("previous_mode")
            return outs
        # What was there before us comes back on delete (destroy leaves the host as it was).
        previous = done.before.content
        outs["previous"] = previous if previous != desired else None
        outs["previous_mode"] = done.before.mode(path) if outs["previous"] else None
        return outs

    def resource_id(self, outputs: dict[str, Any]) -> str:
        return f"{outputs['host']['name']}:{outputs['path']}"

    def observe(self, session: SshSession, props: dict[str, Any]) -> dict[str, Any] | None:
        path = props["path"]
        found = self.facts(session, props)
        if found.content is None:
            return None  # removed by hand: the script is gone
        return {
            **props,
            "routes": facts.parse_routes(found.content),
            "sha256": sha256(found.content),
            "mode": found.mode(path),
        }

    def remove(self, session: SshSession, props: dict[str, Any]) -> None:
        path = props["path"]
        plan = plans.plan_remove(
            path,
            props["routes"],
            session.read_file(path),
            props.get("previous"),
            props.get("previous_mode"),
        )
        if not plan:
            print(f"{session.endpoint.name}: {plan.reason}")  # the engine relays it
        apply(session, plan)


class VifRouteScript(Resource, module="net", name="VifRouteScript"):
    """libvirt's vif-route script on a host: route, proxy_arp and proxy_delay 0 per vif."""

    sha256: pulumi.Output[str]
    mode: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        host: pulumi.Input[dict[str, Any]],
        routes: pulumi.Input[Mapping[str, pulumi.Input[str]]],
        path: pulumi.Input[str] = DEFAULT_PATH,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            VifRouteScriptProvider(),
            resource_name,
            {"host": host, "path": path, "routes": routes, "sha256": None, "mode": None},
            opts,
        )
