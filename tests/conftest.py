"""Session-wide test settings: the offline engine environment, and a guard that a run
in which nothing passed fails (so CI never lands a suite that silently ran nothing)."""

from __future__ import annotations

import os

import pytest

from engine import engine_env

pytest_plugins = ["lab.fixtures", "tests.support.s3_server"]

os.environ.update(engine_env())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    passed = len(reporter.stats.get("passed", [])) if reporter else 0
    if exitstatus == 0 and passed == 0:
        session.exitstatus = pytest.ExitCode.NO_TESTS_COLLECTED
