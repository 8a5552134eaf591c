"""Clocks for the tests: the stand-in's (the server's) and a device's under libfaketime.

No pytest imports. The real server stamps QUEUED / INITIATED and flat telemetry with its own
clock, while a device that sends ``{"ts": .., "values": ..}`` stamps with its clock; a device
whose clock is off (a Pi after a power cut, before NTP) then loses to the ts rule. The stand-in's
:class:`Clock` is real time plus an offset you set; :func:`faketime_env` gives the environment
that runs a process (the gateway under test) with ITS clock offset, through libfaketime
(Debian package ``faketime``, installed by scripts/ensure-infra.sh).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

LIBFAKETIME_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/arm-linux-gnueabihf/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
)


class Clock:
    """Milliseconds since the epoch: real time plus ``offset_ms``, or a frozen value."""

    def __init__(self, offset_ms: int = 0) -> None:
        self._lock = threading.Lock()
        self._offset_ms = offset_ms
        self._frozen: int | None = None

    def now_ms(self) -> int:
        with self._lock:
            if self._frozen is not None:
                return self._frozen
            return int(time.time() * 1000) + self._offset_ms

    @property
    def offset_ms(self) -> int:
        with self._lock:
            return self._offset_ms

    @offset_ms.setter
    def offset_ms(self, value: int) -> None:
        with self._lock:
            self._offset_ms = int(value)

    def advance(self, ms: int) -> None:
        """Move the clock (a frozen one too) by ``ms``."""
        with self._lock:
            if self._frozen is not None:
                self._frozen += ms
            else:
                self._offset_ms += ms

    def freeze(self, at_ms: int | None = None) -> int:
        """Stop the clock at ``at_ms`` (default: now); every stamp is then the same."""
        now = self.now_ms() if at_ms is None else at_ms
        with self._lock:
            self._frozen = now
        return now

    def unfreeze(self) -> None:
        with self._lock:
            self._frozen = None


def find_libfaketime() -> str | None:
    """The path of ``libfaketime.so.1``, or None when the package is not installed."""
    for candidate in LIBFAKETIME_CANDIDATES:
        if Path(candidate).is_file():
            return candidate
    return None


def faketime_spec(offset: str | float) -> str:
    """libfaketime's ``FAKETIME`` for a relative offset: ``"-1h"`` as is, -3600 -> ``"-3600"``."""
    if isinstance(offset, str):
        text = offset.strip()
        if not text or text[0] not in "+-":
            raise ValueError(f"a relative offset starts with + or -: {offset!r}")
        return text
    return f"{round(offset):+d}"


def faketime_env(
    offset: str | float, base: dict[str, str] | None = None, *, fake_monotonic: bool = False
) -> dict[str, str]:
    """Variables that run a process with its clock shifted by ``offset`` (``"-1h"``, ``"+2d"``,
    or seconds as a number): ``LD_PRELOAD`` (prepended to the one in ``base``, default
    ``os.environ``), ``FAKETIME`` and, unless ``fake_monotonic``,
    ``FAKETIME_DONT_FAKE_MONOTONIC=1`` (asyncio and timeouts keep running on real time, as on a
    device whose wall clock is wrong). Merge the result into the process environment.

    ``FileNotFoundError`` when libfaketime is missing (apt-get install faketime).
    """
    library = find_libfaketime()
    if library is None:
        raise FileNotFoundError(
            "libfaketime.so.1 not found: install the Debian package 'faketime' "
            "(scripts/ensure-infra.sh does)"
        )
    environ = os.environ if base is None else base
    preload = " ".join(p for p in (library, environ.get("LD_PRELOAD", "")) if p)
    env = {"LD_PRELOAD": preload, "FAKETIME": faketime_spec(offset)}
    if not fake_monotonic:
        env["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
    return env
