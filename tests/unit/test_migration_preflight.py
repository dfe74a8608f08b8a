"""Pre-flight and the disks of a move (providers/migration/preflight.py, disks.py) against
scripted libvirt connections and SSH sessions: what is checked, said and created."""

from __future__ import annotations

from typing import Any

import libvirt
import pytest

from providers.migration import MIB, disks
from providers.migration.disks import DiskCheck, Found, plan_target_disks
from providers.migration.preflight import PreflightError, Side, check, cpu_xml, describe_move
from tests.support.fake_hosts import FakeSession

pytestmark = [pytest.mark.unit]

IMG = "/var/lib/libvirt/images/blog.img"
NEWS: dict[str, Any] = {
    "name": "blog",
    "memory_mib": 128,
    "disks": [{"path": IMG, "size_mib": 64}],
    "domain_type": "kvm",
}
PINNED_CPU = "<domain><cpu mode='custom'><model>Haswell</model></cpu></domain>"


class Domain:
    def __init__(self, xml: str = "<domain/>", name: str = "blog", memory_mib: int = 128) -> None:
        self._xml, self._name, self._memory_mib = xml, name, memory_mib

    def XMLDesc(self, flags: int) -> str:
        return self._xml

    def maxMemory(self) -> int:  # KiB, as libvirt says it
        return self._memory_mib * 1024

    def name(self) -> str:
        return self._name


class Connection:
    def __init__(
        self,
        domains: dict[str, Domain] | None = None,
        libvirt_version: int = 9_000_000,
        qemu_version: int = 7_002_022,
        free_mib: int = 7238,
        cpu_verdict: int = libvirt.VIR_CPU_COMPARE_IDENTICAL,
    ) -> None:
        self._domains = domains or {}
        self._libvirt, self._qemu = libvirt_version, qemu_version
        self._free = free_mib * MIB
        self._cpu_verdict = cpu_verdict

    def listAllDomains(self, flags: int) -> list[Domain]:
        return list(self._domains.values())

    def lookupByName(self, name: str) -> Domain:
        if name not in self._domains:
            raise libvirt.libvirtError(f"Domain not found: no domain with matching name '{name}'")
        return self._domains[name]

    def getLibVersion(self) -> int:
        return self._libvirt

    def getVersion(self) -> int:
        return self._qemu

    def getFreeMemory(self) -> int:
        return self._free

    def compareHypervisorCPU(self, *args: Any) -> int:
        return self._cpu_verdict


def _stat(path: str) -> tuple[str, ...]:
    return ("stat", "-L", "-c", "%f %s %t %T", "--", path)


def _file(size: int) -> tuple[int, str]:
    """stat's answer for a regular file of `size` bytes."""
    return (0, f"81a4 {size} 0 0\n")


def _df(directory: str) -> tuple[str, ...]:
    return ("df", "-B1", "--output=avail", "--", directory)


def _source(size: int = 64 * MIB) -> Side:
    ssh = FakeSession("old", {_stat(IMG): _file(size)})
    return Side("old", Connection({"blog": Domain()}), ssh)


def _target(conn: Connection | None = None, replies: dict | None = None) -> Side:
    absent = {_stat(IMG): (1, ""), _df("/var/lib/libvirt/images"): (0, "Avail\n999999999999\n")}
    return Side("new", conn or Connection(), FakeSession("new", replies or absent))


def test_a_move_that_can_work_is_said_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert check(NEWS, _source(), _target(), announce=True) == ([IMG], {})
    assert capsys.readouterr().out == (
        "blog: pre-flight ok on new (libvirt 9.0.0, QEMU 7.2.22, 7238 MiB free, "
        f"will create {IMG})\n"
    )


def test_a_bigger_target_disk_is_said_and_sliced(capsys: pytest.CaptureFixture[str]) -> None:
    target = _target(replies={_stat(IMG): _file(128 * MIB)})
    assert check(NEWS, _source(), target, announce=False) == ([], {IMG: 64 * MIB})
    assert capsys.readouterr().out == ""  # the move repeats pre-flight silently


def test_every_problem_is_listed_at_once() -> None:
    target_conn = Connection(
        {"blog": Domain()},
        libvirt_version=8_000_000,
        qemu_version=7_000_000,
        free_mib=100,
        cpu_verdict=libvirt.VIR_CPU_COMPARE_INCOMPATIBLE,
    )
    source = _source()
    source.conn._domains["blog"] = Domain(PINNED_CPU)
    target = _target(target_conn, {_stat(IMG): _file(32 * MIB)})
    with pytest.raises(PreflightError) as raised:
        check(NEWS, source, target, announce=True)
    assert str(raised.value).split("\n") == [
        "blog: cannot move old -> new:",
        "  - libvirt on new (8.0.0) is older than on old (9.0.0)",
        "  - QEMU on new (7.0.0) is older than on old (7.2.22)",
        "  - new has 100 MiB free, 128 MiB (+64) needed",
        "  - a domain named blog is already defined on new",
        "  - new's CPU cannot run the VM's CPU model",
        f"  - {IMG}: the target file is 32 MiB, smaller than the source's 64 MiB; grow or "
        "remove it",
    ]


def test_a_vm_the_source_does_not_know_asks_for_a_refresh() -> None:
    source = Side("old", Connection(), FakeSession("old"))
    with pytest.raises(PreflightError, match="not defined on old; run `pulumi refresh`"):
        check(NEWS, source, _target(), announce=True)


def test_only_a_pinned_cpu_model_is_compared() -> None:
    assert cpu_xml("<domain><cpu mode='host-model'/></domain>") is None
    assert cpu_xml("<domain/>") is None
    assert cpu_xml(PINNED_CPU) == '<cpu mode="custom"><model>Haswell</model></cpu>'


def test_preview_sentence() -> None:
    assert describe_move("blog", "old", "new", 64, 128, 100) == (
        "blog: live-migrate old -> new: copy 64 MiB disk + 128 MiB RAM, max downtime 100 ms"
    )


def _file_check(target: Found, room: int | None = None) -> DiskCheck:
    return DiskCheck("/d.img", 64 * MIB, target, room)


@pytest.mark.parametrize(
    ("check_", "expected"),
    [
        (_file_check(Found("file", 64 * MIB)), ([], {}, [])),
        (_file_check(Found(None), 100 * MIB), (["/d.img"], {}, [])),
        (_file_check(Found("file", 128 * MIB)), ([], {"/d.img": 64 * MIB}, [])),
    ],
)
def test_target_disks(check_: DiskCheck, expected: tuple) -> None:
    assert plan_target_disks([check_], source="old", target="new") == expected


@pytest.mark.parametrize(
    ("check_", "problem"),
    [
        (_file_check(Found("file", 32 * MIB)), "smaller than the source"),
        (_file_check(Found(None), 10 * MIB), "10 MiB free"),
        (_file_check(Found(None)), "directory does not exist"),
        (_file_check(Found("directory", 4096)), "/d.img on new is a directory, not a file"),
        (
            _file_check(Found("file", 64 * MIB, ("disk of domain www",))),
            "/d.img on new is in use: disk of domain www",
        ),
    ],
)
def test_target_disk_problems(check_: DiskCheck, problem: str) -> None:
    assert problem in plan_target_disks([check_], source="old", target="new")[2][0]


def test_disk_checks_read_both_hosts() -> None:
    source = FakeSession("old", {_stat("/d.img"): (1, "")})  # none there: the stack's size
    target = FakeSession("new", {_stat("/d.img"): (1, ""), _df("/"): (0, "Avail\n4096\n")})
    checks = disks.disk_checks(source, target, [{"path": "/d.img", "size_mib": 2}])
    assert checks == [DiskCheck("/d.img", 2 * MIB, Found(None), 4096)]


def test_a_move_creates_its_target_disks_at_the_source_file_s_size() -> None:
    source = FakeSession("old", {_stat(IMG): _file(67109376)})
    target = FakeSession("new")
    assert disks.create_target_disks(source, target, [IMG], NEWS["disks"]) == {}
    assert target.ran == [("qemu-img", "create", "-q", "-f", "raw", IMG, "67109376")]


def test_a_new_vm_gets_its_missing_disks(capsys: pytest.CaptureFixture[str]) -> None:
    session = FakeSession("old", {_stat(IMG): (1, ""), _stat("/there.img"): _file(1)})
    disks.ensure_disks(session, [*NEWS["disks"], {"path": "/there.img", "size_mib": 1}])
    assert session.ran == [
        _stat(IMG),
        ("install", "-d", "-m", "0755", "/var/lib/libvirt/images"),
        ("qemu-img", "create", "-q", "-f", "raw", IMG, str(64 * MIB)),
        _stat("/there.img"),
    ]
    assert capsys.readouterr().out == f"old: creating disk {IMG} (64 MiB)\n"
