"""Fixtures of the FileVersionStore and atomic-file tests: ``warnings_log``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from loguru import logger


@pytest.fixture
def warnings_log() -> Iterator[list[str]]:
    """Messages of WARNING and above that teg_ota logs through loguru during the test."""
    logger.enable("teg_ota")
    messages: list[str] = []
    sink_id = logger.add(
        lambda message: messages.append(message.record["message"]), level="WARNING"
    )
    yield messages
    logger.remove(sink_id)
