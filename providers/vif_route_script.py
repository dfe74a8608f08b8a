"""VifRouteScript: the blog's /etc/libvirt/scripts/vif-route on a host, shared by every
stack with VMs there, so that whichever host a VM runs on, libvirt's script routes its /32
to its tap, enables proxy_arp and sets proxy_delay 0.

The script is the same for every stack (`plans.render`). Each resource owns one file,
`<path>.d/<owner>` (its stack, `<project>.<stack>`: `vif address` per VM of the stack),
which the script reads when libvirt runs it; the script itself is held by the set of
those files. Create and update refuse, before writing anything, a vif or an address that
another owner's file routes. Delete removes the resource's own file; the last owner also
removes the script, or puts back the one that was there before glidepath (the first
owner to replace it saved it at `<path>.before-glidepath`). A script changed by hand is
left in place.

Identity is (host, path); a change of the routes or of the owner is an update (only the
owner's own file is rewritten). A replace writes at the new path before removing the old
one: a host should never be left without the script libvirt calls.

`sha256` and `mode` (the script) and `fragment_sha256` (the owner's file) are derived:
check sets what they must be, read reports what they are, so a hand edit, a lost exec bit
or an edited or removed file of the owner shows as drift and `up` rewrites it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, NamedTuple

import pulumi
from pulumi.dynamic import Resource

from providers import validate
from providers.base import Converged, HostProvider, Plans, apply
from providers.facts import vif_route_script as facts
from providers.plans import vif_route_script as plans
from providers.schema.vif_route_script import VifRouteScriptArgs
from providers.transport import SshSession


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _has_unknown(value: Any) -> bool:
    if isinstance(value, Mapping):
        return any(validate.is_unknown(k) or _has_unknown(v) for k, v in value.items())
    return validate.is_unknown(value)


def _mode(stat_mode: str) -> str:
    return f"{int(stat_mode, 8):04o}"


class _Found(NamedTuple):
    # The script's directory, the script and the one saved beside it, those that exist.
    stat: dict[str, facts.Stat]
    content: str | None  # the script, if it is a regular file
    fragments: dict[str, str]  # owner -> its file in <path>.d/

    def mode(self, path: str) -> str | None:
        """The file's mode as `0755`, or None when it does not exist."""
        return _mode(self.stat[path]["mode"]) if path in self.stat else None


class VifRouteScriptProvider(HostProvider[_Found]):
    identity = ("host", "path")

    schema = VifRouteScriptArgs

    def derived(self, inputs: dict[str, Any]) -> dict[str, Any]:
        # What the files must hold, compared with what read finds (drift). Routes known
        # only at `up` (a VM's address) leave the fragment's digest for then.
        derived = {"sha256": sha256(plans.render(inputs["path"])), "mode": plans.MODE}
        if not _has_unknown(inputs.get("routes")):
            derived["fragment_sha256"] = sha256(plans.render_fragment(inputs["routes"]))
        return derived

    def diffed_fields(self, news: dict[str, Any]) -> list[str]:
        return ["host", "path", "routes", "owner", "sha256", "mode", "fragment_sha256"]

    def delete_before_replace(self) -> bool:
        return False  # a new path or host is another file: write it first

    def facts(self, session: SshSession, props: dict[str, Any]) -> _Found:
        path = props["path"]
        stat = facts.process_stat(
            session.run(
                facts.stat_command(plans.directory_of(path), path, plans.saved_path(path)),
                check=False,
            )
        )
        is_file = path in stat and stat[path]["kind"].startswith("regular")
        fragments = facts.process_fragments(
            session.run(facts.fragments_command(plans.fragments_dir(path)), check=False)
        )
        return _Found(stat, session.read_file(path) if is_file else None, fragments)

    def plan(self, props: dict[str, Any], found: _Found, olds: dict[str, Any] | None) -> Plans:
        path, owner, routes = props["path"], props["owner"], props["routes"]
        renamed = olds["owner"] if olds and olds.get("owner") not in (None, owner) else None
        routed = {name: facts.parse_fragment(text) for name, text in found.fragments.items()}
        # Before anything is written: a vif or address of ours in another stack's file.
        yield plans.plan_conflicts(path, owner, routes, routed, renamed)
        directory = plans.directory_of(path)
        directory_stat = found.stat.get(directory)
        yield plans.plan_directory(directory, directory_stat and directory_stat["kind"])
        stat = found.stat.get(path)
        legacy = olds or {}  # a state from before the owners' files: what to save from it
        yield plans.plan_save(
            path,
            found.content,
            stat and stat["mode"],
            plans.saved_path(path) in found.stat,
            legacy.get("previous"),
            legacy.get("previous_mode"),
        )
        # The own file first: a tap created meanwhile finds its route in either script.
        yield plans.plan_fragment(path, owner, routes, found.fragments.get(owner))
        yield plans.plan_write(path, found.content, stat and stat["mode"], stat and stat["kind"])
        if renamed is not None:
            yield plans.plan_drop_fragment(path, renamed, found.fragments)

    def verify(self, props: dict[str, Any], found: _Found) -> str | None:
        path, owner = props["path"], props["owner"]
        mode = found.mode(path)
        if found.content != plans.render(path) or mode != plans.MODE:
            return f"{path} does not hold glidepath's script after writing it (mode {mode})"
        if found.fragments.get(owner) != plans.render_fragment(props["routes"]):
            return f"{plans.fragment_path(path, owner)} does not hold {owner}'s routes"
        return None

    def outputs(self, done: Converged[_Found]) -> dict[str, Any]:
        path, routes = done.props["path"], done.props["routes"]
        return {
            **done.props,
            "routes": dict(routes),
            "sha256": sha256(plans.render(path)),
            "mode": done.after.mode(path),
            "fragment_sha256": sha256(plans.render_fragment(routes)),
        }

    def resource_id(self, outputs: dict[str, Any]) -> str:
        return f"{outputs['host']['name']}:{outputs['path']}"

    def observe(self, session: SshSession, props: dict[str, Any]) -> dict[str, Any] | None:
        path = props["path"]
        found = self.facts(session, props)
        own = found.fragments.get(props["owner"])
        if found.content is None and own is None:
            return None  # removed by hand: the script and the owner's file are gone
        return {
            **props,
            "routes": facts.parse_fragment(own or ""),
            "sha256": None if found.content is None else sha256(found.content),
            "mode": found.mode(path),
            "fragment_sha256": None if own is None else sha256(own),
        }

    def remove(self, session: SshSession, props: dict[str, Any]) -> None:
        path = props["path"]
        found = self.facts(session, props)
        # A state from before the owners' files (it holds `previous`): the script that
        # glidepath generated for it then, with its routes inside, is glidepath's too.
        legacy = (
            "previous" in props
            and plans.is_glidepaths(found.content)
            and facts.parse_routes(found.content or "") == props["routes"]
        )
        plan = plans.plan_remove(
            path,
            props["owner"],
            found.content,
            found.fragments,
            plans.saved_path(path) in found.stat,
            props.get("previous"),
            props.get("previous_mode"),
            legacy,
        )
        print(f"{session.endpoint.name}: {plan.reason}", flush=True)  # the engine relays it
        apply(session, plan)


class VifRouteScript(Resource, module="net", name="VifRouteScript"):
    """libvirt's vif-route script on a host, shared by every stack with VMs there, and
    this stack's file of routes beside it."""

    sha256: pulumi.Output[str]
    fragment_sha256: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        host: pulumi.Input[dict[str, Any]],
        routes: pulumi.Input[Mapping[str, pulumi.Input[str]]],
        path: pulumi.Input[str] | None = None,
        owner: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            VifRouteScriptProvider(),
            resource_name,
            {
                "host": host,
                "path": path,
                "owner": owner,
                "routes": routes,
                "sha256": None,
                "mode": None,
                "fragment_sha256": None,
            },
            opts,
        )
