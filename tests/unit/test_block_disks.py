"""Block-device disks (`/dev/<vg>/<lv>`, the blog's LVM volumes) in pre-flight and when
created (providers/migration/disks.py, preflight.py), against scripted SSH sessions and
libvirt connections: the blog's rule (the target volume exists, the same size or bigger),
`create: lvcreate`, and a target volume something else uses."""

from __future__ import annotations

from typing import Any

import pytest

from providers.migration import MIB, disks
from providers.migration.disks import DiskCheck, Found, plan_target_disks
from providers.migration.preflight import PreflightError, Side, check
from tests.support.fake_hosts import FakeSession
from tests.unit.test_migration_preflight import Connection, Domain

pytestmark = [pytest.mark.unit]

LV = "/dev/vg0/blog"
NEWS: dict[str, Any] = {
    "name": "blog",
    "memory_mib": 128,
    "disks": [{"path": LV, "size_mib": 64}],
    "domain_type": "kvm",
}
VGS = (
    "vgs", "--reportformat", "json", "--units", "b", "--nosuffix",
    "-o", "vg_name,vg_free,vg_extent_size",
)  # fmt: skip


def _stat(path: str = LV) -> tuple[str, ...]:
    return ("stat", "-L", "-c", "%f %s %t %T", "--", path)


def _size(path: str = LV) -> tuple[str, ...]:
    return ("blockdev", "--getsize64", path)


def _usage(path: str = LV) -> tuple[str, ...]:
    return ("lsblk", "--json", "--output", "NAME,TYPE,MOUNTPOINT", "--", path)


def _volume(size: int, path: str = LV, mounted: str | None = None) -> dict:
    """Replies for a block device (dm-3) of `size` bytes at `path`, maybe mounted."""
    point = f'"{mounted}"' if mounted else "null"
    lsblk = f'{{"blockdevices": [{{"name": "dm-3", "type": "lvm", "mountpoint": {point}}}]}}'
    return {
        _stat(path): (0, "61b0 0 fd 3\n"),
        _size(path): (0, f"{size}\n"),
        _usage(path): (0, lsblk),
    }


def _vgs(free: int, vg: str = "vg0", extent: int = 4 * MIB) -> dict:
    report = (
        f'{{"report": [{{"vg": [{{"vg_name": "{vg}", "vg_free": "{free}", '
        f'"vg_extent_size": "{extent}"}}]}}]}}'
    )
    return {VGS: (0, report)}


def _plan(check_: DiskCheck) -> tuple[list[str], dict[str, int], list[str]]:
    return plan_target_disks([check_], source="old", target="new")


# --- the blog's rule --------------------------------------------------------------------


def test_a_volume_of_the_same_size_is_taken_as_it_is() -> None:
    assert _plan(DiskCheck(LV, 64 * MIB, Found("block", 64 * MIB))) == ([], {}, [])


def test_a_bigger_volume_gets_a_storage_slice_of_the_source_s_size() -> None:
    assert _plan(DiskCheck(LV, 64 * MIB, Found("block", 96 * MIB))) == ([], {LV: 64 * MIB}, [])


@pytest.mark.parametrize(
    ("check_", "problem"),
    [
        (
            DiskCheck(LV, 64 * MIB, Found("block", 32 * MIB)),
            f"{LV}: the target volume on new is 32 MiB, smaller than the source's 64 MiB on "
            "old; grow it (lvextend) or remove it",
        ),
        (
            # Off a MiB boundary (a loop device, a partition): exact bytes, never rounded.
            DiskCheck(LV, 64 * MIB + 512, Found("block", 64 * MIB)),
            f"{LV}: the target volume on new is 64 MiB, smaller than the source's "
            "67109376 bytes on old; grow it (lvextend) or remove it",
        ),
        (
            DiskCheck(LV, 64 * MIB, Found(None)),
            f"{LV}: no such block device on new; create the volume there (64 MiB or bigger, "
            "as on old), or set create: lvcreate",
        ),
        (
            DiskCheck(LV, 64 * MIB, Found("file", 64 * MIB)),
            f"{LV} on new is a file, not a block device",
        ),
        (
            DiskCheck(
                LV, 64 * MIB, Found("block", 64 * MIB, ("mounted at /srv", "disk of domain www"))
            ),
            f"{LV} on new is in use: mounted at /srv; disk of domain www",
        ),
    ],
)
def test_target_volume_problems_name_the_path_the_hosts_and_both_sizes(
    check_: DiskCheck, problem: str
) -> None:
    assert _plan(check_) == ([], {}, [problem])


def test_a_volume_in_use_and_too_small_says_both() -> None:
    found = Found("block", 32 * MIB, ("held by blog-crypt (crypt)",))
    assert _plan(DiskCheck(LV, 64 * MIB, found))[2] == [
        f"{LV} on new is in use: held by blog-crypt (crypt)",
        f"{LV}: the target volume on new is 32 MiB, smaller than the source's 64 MiB on old; "
        "grow it (lvextend) or remove it",
    ]


# --- create: lvcreate -----------------------------------------------------------------


def _lvcreate(room: int | None, *, extent: int = 4 * MIB, error: str = "") -> DiskCheck:
    return DiskCheck(LV, 64 * MIB + 512, Found(None), room, "lvcreate", extent, error)


def test_lvcreate_where_the_volume_group_has_room_for_whole_extents() -> None:
    assert _plan(_lvcreate(68 * MIB)) == ([LV], {}, [])


@pytest.mark.parametrize(
    ("check_", "problem"),
    [
        (_lvcreate(None), f"{LV}: volume group vg0 does not exist on new"),
        # 64 MiB + 512 bytes takes 17 extents of 4 MiB.
        (_lvcreate(66 * MIB), f"{LV}: 68 MiB needed in volume group vg0 on new, 66 MiB free"),
        (
            _lvcreate(
                None,
                error="`vgs` failed (sh: 1: vgs: not found); create: lvcreate needs LVM "
                "(lvm2) there",
            ),
            f"{LV}: cannot list volume groups on new: `vgs` failed (sh: 1: vgs: not found); "
            "create: lvcreate needs LVM (lvm2) there",
        ),
    ],
)
def test_lvcreate_problems(check_: DiskCheck, problem: str) -> None:
    assert _plan(check_) == ([], {}, [problem])


# --- reading the hosts ----------------------------------------------------------------


def test_disk_checks_read_each_volume_s_size_and_the_target_s_users() -> None:
    source = FakeSession("old", _volume(64 * MIB))
    target = FakeSession("new", _volume(96 * MIB, mounted="/srv"))
    checks = disks.disk_checks(source, target, NEWS["disks"], {LV: ["www"]})
    assert checks == [
        DiskCheck(LV, 64 * MIB, Found("block", 96 * MIB, ("mounted at /srv", "disk of domain www")))
    ]
    assert source.ran == [_stat(), _size()]  # who uses the source's volume: the VM itself
    assert target.ran == [_stat(), _size(), _usage()]


def test_volume_groups_are_read_once_and_only_for_lvcreate() -> None:
    wanted: list[dict[str, Any]] = [
        {"path": "/dev/vg0/a", "size_mib": 64, "create": "lvcreate"},
        {"path": "/dev/vg1/b", "size_mib": 64, "create": "lvcreate"},
        {"path": "/dev/vg0/c", "size_mib": 64},
    ]
    source = FakeSession(
        "old", {**_volume(64 * MIB, "/dev/vg0/a"), **_volume(64 * MIB, "/dev/vg1/b")}
    )
    source.replies.update(_volume(64 * MIB, "/dev/vg0/c"))
    target = FakeSession("new", {_stat(d["path"]): (1, "") for d in wanted})
    target.replies.update(_vgs(10 * 1024 * MIB))
    checks = disks.disk_checks(source, target, wanted)
    assert [(c.room, c.create) for c in checks] == [
        (10 * 1024 * MIB, "lvcreate"),
        (None, "lvcreate"),  # no vg1 on new
        (None, None),
    ]
    assert target.ran.count(VGS) == 1


def test_a_target_without_lvm_says_why() -> None:
    target = FakeSession(
        "new", {_stat(): (1, ""), VGS: (127, "", "bash: line 1: vgs: command not found\n")}
    )
    source = FakeSession("old", _volume(64 * MIB))
    (found,) = disks.disk_checks(source, target, [{**NEWS["disks"][0], "create": "lvcreate"}])
    assert found.room_error == (
        "`vgs` failed (bash: line 1: vgs: command not found); create: lvcreate needs LVM "
        "(lvm2) there"
    )


# --- pre-flight as the preview runs it -----------------------------------------------


def test_preview_refuses_a_smaller_target_volume_naming_both_sizes() -> None:
    source = Side("old", Connection({"blog": Domain()}), FakeSession("old", _volume(64 * MIB)))
    target = Side("new", Connection(), FakeSession("new", _volume(32 * MIB)))
    with pytest.raises(PreflightError) as raised:
        check(NEWS, source, target, announce=True)
    assert str(raised.value).split("\n") == [
        "blog: cannot move old -> new:",
        f"  - {LV}: the target volume on new is 32 MiB, smaller than the source's 64 MiB on "
        "old; grow it (lvextend) or remove it",
    ]


def test_preview_refuses_a_volume_another_domain_on_the_target_opens() -> None:
    www = Domain(f"<domain><devices><disk><source dev='{LV}'/></disk></devices></domain>", "www")
    source = Side("old", Connection({"blog": Domain()}), FakeSession("old", _volume(64 * MIB)))
    target = Side("new", Connection({"www": www}), FakeSession("new", _volume(64 * MIB)))
    with pytest.raises(PreflightError, match=f"{LV} on new is in use: disk of domain www"):
        check(NEWS, source, target, announce=True)


def test_preview_passes_and_says_the_slice(capsys: pytest.CaptureFixture[str]) -> None:
    source = Side("old", Connection({"blog": Domain()}), FakeSession("old", _volume(64 * MIB)))
    target = Side("new", Connection(), FakeSession("new", _volume(96 * MIB)))
    assert check(NEWS, source, target, announce=True) == ([], {LV: 64 * MIB})
    assert f"bigger target disk kept at source size: {LV}" in capsys.readouterr().out


# --- creating volumes -----------------------------------------------------------------


def test_a_move_lvcreates_at_the_source_s_size_and_slices_what_lvm_rounded_up() -> None:
    wanted = [{"path": LV, "size_mib": 64, "create": "lvcreate"}]
    source = FakeSession("old", _volume(64 * MIB + 512))
    target = FakeSession("new", _volume(68 * MIB))  # what lvcreate made: 17 extents
    assert disks.create_target_disks(source, target, [LV], wanted) == {LV: 64 * MIB + 512}
    assert target.ran == [
        ("lvcreate", "--yes", "--name", "blog", "--size", f"{64 * MIB + 512}b", "vg0"),
        _stat(),
        _size(),
    ]


def test_a_new_vm_takes_its_volume_as_it_is() -> None:
    session = FakeSession("old", _volume(64 * MIB))
    disks.ensure_disks(session, NEWS["disks"])
    assert session.ran == [_stat(), _size(), _usage()]  # read only


def test_a_new_vm_s_volume_is_created_only_when_asked() -> None:
    session = FakeSession("old", {_stat(): (1, "")})
    with pytest.raises(RuntimeError, match=f"old: {LV} does not exist: create the volume"):
        disks.ensure_disks(session, NEWS["disks"])
    disks.ensure_disks(session, [{**NEWS["disks"][0], "create": "lvcreate"}])
    assert session.ran[-1] == (
        "lvcreate", "--yes", "--name", "blog", "--size", f"{64 * MIB}b", "vg0",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("replies", "users", "error"),
    [
        (_volume(64 * MIB, mounted="/srv"), {}, f"old: {LV} is in use: mounted at /srv"),
        (_volume(64 * MIB), {LV: ["www"]}, f"old: {LV} is in use: disk of domain www"),
        ({_stat(): (0, "81a4 4096 0 0\n")}, {}, f"old: {LV} is a file, not a block device"),
    ],
)
def test_a_new_vm_refuses_a_volume_it_cannot_have(
    replies: dict, users: dict[str, list[str]], error: str
) -> None:
    with pytest.raises(RuntimeError, match=error):
        disks.ensure_disks(FakeSession("old", replies), NEWS["disks"], users)


def test_domain_users_leave_the_vm_itself_out() -> None:
    xml = f"<domain><devices><disk><source dev='{LV}'/></disk></devices></domain>"
    conn = Connection({"blog": Domain(xml, "blog"), "www": Domain(xml, "www")})
    assert disks.domain_users(conn, "blog") == {LV: ["www"]}
