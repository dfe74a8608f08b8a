"""bench/fixed_cost.py's split of an engine log into phases (pure)."""

from __future__ import annotations

import json

import pytest

from bench.fixed_cost import _log, phases

pytestmark = pytest.mark.unit

URN = "urn:pulumi:s::glidepath::glidepath:components:HostLink$pulumi-python:dynamic/net:Tunnel::t"
CMD = "urn:pulumi:s::glidepath::glidepath:components:HypervisorHost$command:remote:Command::b"
PROVIDER = "urn:pulumi:s::glidepath::pulumi:providers:pulumi-python::default"
LOG = [
    (0.00, "langhost[python].About() executing"),
    (0.30, "langhost[python].About() success"),
    (0.40, "langhost[python].GetRequiredPackages(root=/p, program=/p) executing"),
    (0.75, "langhost[python].GetRequiredPackages(root=/p, program=/p) success: #versions=1"),
    (0.80, "langhost[python].Run(pwd=/p,root=/p) executing"),
    (1.50, "ResourceMonitor.RegisterResource received: custom=false"),
    (1.55, f"Provider[0x1].Check({CMD}) executing"),
    (1.56, f"Provider[0x1].Check({CMD}) success"),
    (1.60, f"ProviderRegistry.Check({PROVIDER}) executing"),
    (1.90, "Handshake: not supported by '/t/bin/pulumi-resource-pulumi-python'"),
    (1.91, f"Provider[0x2].Check({URN}) executing"),
    (2.15, f"Provider[0x2].Check({URN}) success: inputs=#7"),
    (2.20, "ResourceMonitor.RegisterResource received: custom=true"),
    (2.20, f"Provider[0x2].Update(t,{URN}) executing"),
    (2.30, f"Provider[0x2].Update(t,{URN}) success; #outs=2"),
    (2.60, "langhost[python].Run(...) success"),
]


def lines() -> list[tuple[float, str]]:
    return [
        (0.0, json.dumps({"time": f"2026-12-06T22:44:{10 + at:09.6f}Z", "msg": msg}) + "\n")
        for at, msg in LOG
    ] + [(0.0, "Updating (s):\n")]


def test_each_phase_is_read_from_its_own_lines() -> None:
    found = phases(3.0, _log(lines()))
    expected = {
        "cli": 0.4,  # 3.0 s of wall time, 2.6 s of log
        "language host": 0.8,
        "of which About": 0.3,
        "of which GetRequiredPackages": 0.35,
        "program start": 0.7,
        "provider start": 0.3,
        "first provider call": 0.24,  # the dynamic provider's, not the command provider's
        "calls": 0.11,  # the command provider's Check and the Update
        "end": 0.3,
    }
    for phase, seconds in expected.items():
        assert found[phase] == pytest.approx(seconds, abs=1e-3), phase
    assert found["total"] == 3.0
    assert found["other"] == pytest.approx(
        3.0 - sum(v for k, v in expected.items() if not k.startswith("of which")), abs=1e-3
    )
