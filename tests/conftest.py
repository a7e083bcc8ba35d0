"""Shared fixtures."""

from __future__ import annotations

import logging

import pytest

from edgensd.log import logger


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """No silent skips: a skipped test fails (CI installs every extra, so nothing may be missing)."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"test skipped, which this suite does not allow (everything it needs is installed by " \
                          f"scripts/install.sh): {reason}"


@pytest.fixture
def edgensd_log():
    """Records of the package logger (it does not propagate to the root logger, so caplog misses it)."""
    records: list[logging.LogRecord] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = _Keep(level=logging.DEBUG)
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(old)
