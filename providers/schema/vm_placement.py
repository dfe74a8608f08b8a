"""VmPlacement's inputs: a VM (its domain, disks and how it migrates), the host it runs
on and the fleet it may move within. The stack's `glidepath:vms` entries are the same VM."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
    with_config,
)
from typing_extensions import TypedDict

from providers import validate
from providers.schema.fields import (
    AbsolutePath,
    Address,
    Between,
    Boolean,
    Model,
    ResourceArgs,
    TunnelAddress,
    VmName,
    at,
    checked,
)
from providers.schema.host import Endpoint
from providers.validate import Invalid

#: Below 96 MiB QEMU and a stock kernel do not boot.
Memory = Annotated[int, Between(96, 1 << 22)]
DEFAULT_MEMORY_MIB = 128
DEFAULT_VCPUS = 1
#: "kvm" where /dev/kvm runs the guest, "qemu" for TCG (emulated).
DomainType = Literal["kvm", "qemu"]
DEFAULT_DOMAIN_TYPE: DomainType = "kvm"
#: When a move switches the VM to the target before its memory is all copied.
PostCopy = Literal["never", "after_first_pass", "if_stuck"]
#: What removing the VM from the stack (or destroying the stack) does to its domain.
OnRemove = Literal["release", "shutdown"]


def _vif(value: Any) -> str:
    vif = validate.interface_name(value)
    if not vif.startswith("vif"):
        # The egress mark matches `-i vif+`: another tap name would leave the VM unmarked.
        raise Invalid(f"{vif!r} must start with 'vif' (the egress mark matches vif+)")
    return vif


def _cmdline(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 1024 or "\n" in value or "\r" in value:
        raise Invalid("must be one line of at most 1024 characters")
    return value


#: What backs a disk, told by its path: under /dev/ a block device (an LVM volume, as in the
#: blog; LVM on LUKS is the same to libvirt), anywhere else a raw image file.
DiskKind = Literal["file", "block"]


def disk_kind(path: str) -> DiskKind:
    return "block" if path.startswith("/dev/") else "file"


class Disk(Model):
    """A VM disk, at the same path on every host the VM runs on: a raw image file, or a
    block device where the path is under /dev/ (`/dev/<vg>/<lv>`, as in the blog)."""

    path: AbsolutePath
    size_mib: Annotated[int, Between(1, 1 << 24)]
    """The size a missing disk is created at; a move copies the source's own size."""
    create: Literal["lvcreate"] | None = None
    """Block devices only. Unset: the volume must exist on every host the VM runs on, at
    least as big as on the source (the blog's rule). `lvcreate`: glidepath creates it
    where it is missing, in the volume group its path names (`/dev/<vg>/<lv>`). A file
    disk is always created with qemu-img where it is missing."""

    @property
    def kind(self) -> DiskKind:
        return disk_kind(self.path)

    @model_validator(mode="after")
    def _lvcreate_makes_a_volume(self) -> Disk:
        if self.create == "lvcreate":
            if self.kind != "block":
                raise at(
                    (
                        "create",
                        f"lvcreate makes LVM volumes (/dev/<vg>/<lv>), not {self.path}: a file "
                        "disk is created with qemu-img anyway",
                    )
                )
            try:
                validate.lvm_volume(self.path)
            except Invalid as err:
                raise at(("path", f"{err} (create: lvcreate)")) from None
        return self

    @model_serializer(mode="wrap")
    def _unset_create_left_out(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # As stored before `create` existed: a VM of file disks shows no change (no update).
        data: dict[str, Any] = handler(self)
        if data.get("create") is None:
            data.pop("create", None)
        return data


def _paths_differ(disks: list[Disk]) -> list[Disk]:
    seen: dict[str, int] = {}
    for index, disk in enumerate(disks):
        if disk.path in seen:
            raise at((f"[{index}].path", f"{disk.path} is also disks[{seen[disk.path]}]'s"))
        seen[disk.path] = index
    return disks


class Migration(Model):
    """How a move runs: libvirt's live migration with the disks."""

    max_downtime_ms: Annotated[int, Between(1, 60_000)] = 100
    """The pause it aims for; raised in steps if the copy does not converge."""
    bandwidth_mib_s: Annotated[int, Between(0, 1 << 20)] = 0
    """0: no limit."""
    auto_converge: Boolean = True
    """Let QEMU slow a guest that dirties memory faster than it is copied."""
    timeout_s: Annotated[int, Between(1, 86_400)] = 600
    """The move is aborted after this long, the VM left running on its source."""
    transport: Literal["tunnel", "direct"] = "tunnel"
    """`tunnel`: memory and disks cross inside the hosts' `ssh -w` link (encrypted); a move
    between hosts without a link is refused. `direct`: libvirt's default, the target's
    address, in clear: only between hosts on a network you trust."""
    postcopy: PostCopy = "never"
    """`never`: pre-copy only; the pause carries the last dirty pages. `after_first_pass`:
    once the disks are copied and one full memory pass is done, the VM switches to the
    target and pulls the rest of its memory from the source on demand (post-copy): the
    pause is the device state only. `if_stuck`: post-copy only when pre-copy does not
    converge (still copying at the pass where the pause would be raised). From the switch
    on the VM's memory is split between the hosts until the copy ends: a broken link
    pauses it on both, and glidepath resumes the copy (docs/recovery.md)."""
    postcopy_bandwidth_mib_s: Annotated[int, Between(0, 1 << 20)] = 0
    """The post-copy phase's limit; 0: none. Only with `postcopy` other than `never`."""

    @model_validator(mode="after")
    def _postcopy_limit_needs_postcopy(self) -> Migration:
        if self.postcopy_bandwidth_mib_s and self.postcopy == "never":
            raise at(
                (
                    "postcopy_bandwidth_mib_s",
                    "limits the post-copy phase, and postcopy is never: set postcopy "
                    "(after_first_pass or if_stuck), or leave this 0",
                )
            )
        return self

    @model_serializer(mode="wrap")
    def _postcopy_unset_left_out(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # As stored before post-copy existed: a VM that does not use it shows no change.
        data: dict[str, Any] = handler(self)
        if data.get("postcopy") == "never":
            data.pop("postcopy", None)
        if data.get("postcopy_bandwidth_mib_s") == 0:
            data.pop("postcopy_bandwidth_mib_s", None)
        return data


@with_config(ConfigDict(extra="forbid"))
class Boot(TypedDict, total=False):
    """Direct kernel boot (otherwise the first disk boots)."""

    kernel: AbsolutePath
    initrd: AbsolutePath
    cmdline: Annotated[str, checked(_cmdline)]


Mac = Annotated[str, checked(validate.mac)]
CpuModel = Annotated[str, checked(validate.cpu_model)]
#: What an adopted VM keeps as its own: glidepath reads it from the live domain.
DEFINITION_FIELDS = ("memory_mib", "vcpus", "disks", "boot", "domain_type", "cpu_model", "mac")


class VmSpec(Model):
    """A VM wherever it runs."""

    ip: Address
    """Its address, routed to its tap as a /32."""
    vif: Annotated[str, checked(_vif)]
    """Its tap on whichever host it runs: unique in the fleet."""
    adopt: Boolean = False
    """It runs already (defined by hand): glidepath takes it over as it is, never redefines
    it, and migrates its live definition; only placement and the network are managed."""
    memory_mib: Memory = DEFAULT_MEMORY_MIB
    vcpus: Annotated[int, Between(1, 256)] = DEFAULT_VCPUS
    cpu_model: CpuModel | None = None
    """host-passthrough, host-model or a named model; none: QEMU's default CPU."""
    mac: Mac | None = None
    """Its NIC's MAC; none: one derived from its name (the same on every host)."""
    disks: Annotated[list[Disk], AfterValidator(_paths_differ)] = Field(default_factory=list)
    migration: Migration = Migration()
    domain_type: DomainType = DEFAULT_DOMAIN_TYPE
    boot: Boot = Field(default_factory=lambda: Boot())
    on_remove: OnRemove = "release"
    """What removing it from the stack (or `pulumi destroy`) does. `release`: nothing on its
    host; it runs on, defined, and glidepath no longer manages it. `shutdown`: the ACPI
    power button, up to `shutdown_timeout_s` for the guest to stop, then undefined; a guest
    that does not stop in time fails the removal (never a hard power-off)."""
    shutdown_timeout_s: Annotated[int, Between(1, 3600)] = 120
    """With `on_remove: shutdown`: how long the guest has to stop."""
    delete_disks: Boolean = False
    """Delete its disk files when it is removed from the stack (kept by default); only with
    `on_remove: shutdown` (a released VM still runs on them); block devices are never
    removed by glidepath."""

    @model_validator(mode="after")
    def _disks_go_only_with_a_stopped_vm(self) -> VmSpec:
        if self.delete_disks and self.on_remove != "shutdown":
            raise at(
                (
                    "delete_disks",
                    f"true needs on_remove: shutdown; with on_remove: {self.on_remove} the VM "
                    "keeps running on these disks",
                )
            )
        if self.delete_disks:
            block = [d.path for d in self.disks if d.kind == "block"]
            if block:
                raise at(
                    (
                        "delete_disks",
                        f"glidepath never removes block devices ({', '.join(block)}): "
                        "remove the volumes by hand (lvremove), and leave delete_disks false",
                    )
                )
        return self


class VmPlacementArgs(VmSpec, ResourceArgs):
    name: VmName
    host: Endpoint
    """Where it runs: changing it live-migrates the VM."""
    fleet: dict[str, Endpoint]
    """Every host of the stack, where it may be found."""
    cutover_router: Endpoint | None = None
    """Where the network's cutover switches after a move (lab-router), opened while copying."""
    moves_at_once: Annotated[int, Between(1, 4)] = 1
    """glidepath:moves.at_once: how many placements of the stack migrate at the same time."""
    tunnel_addresses: dict[str, dict[str, TunnelAddress]] = Field(default_factory=dict)
    """[host][peer]: host's address on its link with peer; a move to host listens there."""

    @model_validator(mode="after")
    def _on_a_host_of_the_fleet(self) -> VmPlacementArgs:
        if self.host.name not in self.fleet:
            raise at(("host", f"{self.host.name!r} is not one of the stack's hosts"))
        for host, peers in self.tunnel_addresses.items():
            for peer in (host, *peers):
                if peer not in self.fleet:
                    raise at(("tunnel_addresses", f"{peer!r} is not one of the stack's hosts"))
        return self
