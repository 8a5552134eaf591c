"""Fixtures of the MQTT link and outbox tests: ``link_factory`` (links on the test's
broker, stopped at teardown) and ``log_lines`` (what teg_ota logs during the test)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from gmqtt_link_support import LinkFactory, link_maker
from loguru import logger


@pytest.fixture
def link_factory(tmp_path: Path) -> Iterator[LinkFactory]:
    """Links on the test's broker (gmqtt_link_support.link_maker); stopped at teardown."""
    with link_maker(tmp_path) as make:
        yield make


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    lines: list[str] = []
    logger.enable("teg_ota")
    sink = logger.add(lambda message: lines.append(str(message)), level="DEBUG")
    yield lines
    logger.remove(sink)
