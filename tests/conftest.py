"""Shared fixtures."""

from __future__ import annotations

import logging

import pytest

from edgensd.log import logger


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
