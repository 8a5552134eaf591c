"""The outbox's bound: which entry goes when it is full, and how drops are reported.

Kept apart from :mod:`teg_ota.adapters.mqtt.outbox` so the rule is one pure function
(:func:`victim_index`) and the log stays readable under a flood: at most one warning per
:data:`DROP_WARNING_INTERVAL_S`, with the number dropped since the previous one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

from loguru import logger

DROP_WARNING_INTERVAL_S = 60.0


def victim_index(ota_states: Iterable[bool]) -> int:
    """Which entry a full outbox drops, given each entry's ``ota_state`` oldest first: the
    oldest telemetry entry; the oldest entry when there are only OTA states."""
    return next((index for index, ota in enumerate(ota_states) if not ota), 0)


class DropReport:
    """Counts drops and logs them, rate-limited (callers serialise calls)."""

    def __init__(
        self, directory: Path, capacity: int, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._directory = directory
        self._capacity = capacity
        self._monotonic = monotonic
        self.total = 0
        """Entries dropped since creation."""
        self._unreported = 0
        self._last_warning = float("-inf")

    def dropped(self, count: int) -> None:
        """``count`` more entries were dropped (0: only report earlier ones, when due)."""
        self.total += count
        self._unreported += count
        if self._unreported == 0:
            return
        now = self._monotonic()
        if now - self._last_warning < DROP_WARNING_INTERVAL_S:
            return
        logger.warning(
            "Outbox {} is full ({} messages): dropped the {} oldest telemetry message(s) "
            "({} since start); OTA states are kept longest",
            self._directory,
            self._capacity,
            self._unreported,
            self.total,
        )
        self._unreported = 0
        self._last_warning = now
