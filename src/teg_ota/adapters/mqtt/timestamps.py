"""When telemetry carries a device timestamp, and timestamps that never go back (but stay
near the clock).

ThingsBoard keeps a key's latest value only when the new ``ts`` is not older than the one it
has, and stamps its own ``QUEUED`` / ``INITIATED`` with server time. A Raspberry Pi has no
real-time clock: after a power cut its clock can be behind until NTP syncs, and a device
that stamped every report with its own clock would leave the dashboard in "Updating" for
good. So:

* **Live** messages (queued while connected and sent within :data:`LIVE_WINDOW_S`) go out
  flat, ``{"k": v}``: ThingsBoard stamps them on arrival (:func:`is_live`).
* Messages queued while offline (or by an earlier run) keep their device ``ts``: it says
  when it happened. That ``ts`` is ``max(now_ms, last_ts_ms + 1)``, and ``last_ts_ms`` is
  kept durably in ``<outbox dir>/link/telemetry_last_ts`` (a sub-directory: the outbox
  only moves aside directories named like its entries). The link raises the mark to the
  instant an attribute message (an OTA assignment) arrived, so a report is never stamped
  before the assignment it answers, not even after a power cut that set the clock back.
  Strictly increasing also keeps two states reported within one millisecond apart
  (ThingsBoard stores one value per key and ts).
* A mark more than :data:`MAX_MARK_AHEAD_S` ahead of the clock is discarded with a warning,
  whenever that is seen: at start-up (a clock that was once set far ahead, then corrected)
  and at every stamp (one clock reading decades ahead, a glitch, raised the mark while
  running). Kept, it would hold every later ``ts`` in the future, above what the server
  stamps; discarded, stamps follow the clock again (the file is rewritten by the next
  commit). This is the one case where stamps go back. The message stamped by the glitch
  itself keeps its ``ts``: nothing can tell a wrong clock from a right one at that instant.
* A mark that cannot be read or saved (damaged, a directory in its place, a full disk)
  never stops the link: it is ignored or kept in memory, with one warning.

Every message is stamped when it is queued (the outbox keeps the stamped form either way);
whether the stamp is sent is decided when it is sent.

The rules and the mark's file format are pure functions (:func:`is_live`,
:func:`next_stamp_ms`, :func:`mark_is_credible`, :func:`credible_mark`, :func:`parse_mark`,
:func:`format_mark`)
so they can be tested without a file system or a clock; :class:`TimestampMark` only adds
the file and the clock around them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from loguru import logger

from teg_ota.adapters.atomic_file import (
    ensure_dir,
    read_text_or_none,
    remove_stale_temp_files,
    write_atomic,
)

LINK_STATE_DIR_NAME: Final = "link"
"""Sub-directory of the outbox directory for the link's own state (the outbox skips dirs)."""
LAST_TS_FILE_NAME: Final = "telemetry_last_ts"
MAX_MARK_BYTES: Final = 64
"""A mark file larger than this was not written by us: it is ignored, never read whole."""
MAX_MARK_AHEAD_S: Final = 24 * 3600.0
"""A mark more than this (one day) ahead of the clock is discarded (at start-up or later).

A Pi restores its clock at boot to about when it was shut down (fake-hwclock), so the mark
of a healthy device is at most a little ahead of it; a mark a day or more ahead comes from
a clock that once ran far ahead. The price: a Pi that boots with its clock more than a day
behind (no fake-hwclock) stamps what it queues offline with that clock until NTP syncs
(live messages are stamped by ThingsBoard anyway)."""
LIVE_WINDOW_S: Final = 5.0
"""A message queued while connected and sent within this many seconds goes out flat."""
WARNING_INTERVAL_S = 60.0
"""At most one warning per this many seconds about discarded marks or failed saves (each
later line says how many happened meanwhile)."""

_MARK_RE = re.compile(r"[0-9]{1,16}")


def mark_path(outbox_dir: Path) -> Path:
    """Where the mark of the link using the outbox in ``outbox_dir`` lives."""
    return outbox_dir / LINK_STATE_DIR_NAME / LAST_TS_FILE_NAME


def is_live(queued_at_s: float | None, now_s: float) -> bool:
    """Whether a message is sent flat (ThingsBoard stamps it on arrival) or with its ``ts``.

    ``queued_at_s`` is the monotonic instant it was queued while connected, ``None`` when it
    was queued offline (or by an earlier run); ``now_s`` is the same clock now. Flat only
    when it was queued while connected and is sent within :data:`LIVE_WINDOW_S`.
    """
    return queued_at_s is not None and 0.0 <= now_s - queued_at_s <= LIVE_WINDOW_S


def mark_is_credible(mark_ms: int, now_s: float) -> bool:
    """Whether a mark may be kept: at most :data:`MAX_MARK_AHEAD_S` ahead of the clock
    ``now_s`` (checked at start-up and before every stamp)."""
    return mark_ms <= int((now_s + MAX_MARK_AHEAD_S) * 1000)


def credible_mark(mark_ms: int, now_s: float) -> int:
    """The mark that holds at ``now_s``: ``mark_ms``, or 0 (no mark: the clock decides)
    when it is not credible."""
    return mark_ms if mark_is_credible(mark_ms, now_s) else 0


def next_stamp_ms(now_s: float, last_ms: int) -> int:
    """The ``ts`` of the next message: now, unless that is not after the last one."""
    return max(int(now_s * 1000), last_ms + 1)


def parse_mark(text: str) -> int | None:
    """The mark in a mark file's ``text``; ``None`` when it is not one (decimal digits,
    surrounding white space allowed), so a damaged file cannot push timestamps anywhere."""
    value = text.strip()
    if not _MARK_RE.fullmatch(value):
        return None
    return int(value)


def format_mark(last_ms: int) -> bytes:
    """The content of the mark file for ``last_ms`` (what :func:`parse_mark` reads)."""
    return b"%d\n" % last_ms


class _Throttle:
    """At most one log line per :data:`WARNING_INTERVAL_S`; counts the ones held back."""

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self._monotonic = monotonic
        self._last = float("-inf")
        self._held_back = 0

    def allow(self) -> int | None:
        """``None``: too soon, stay quiet (counted). Else how many were held back since."""
        now = self._monotonic()
        if now - self._last < WARNING_INTERVAL_S:
            self._held_back += 1
            return None
        held_back, self._held_back, self._last = self._held_back, 0, now
        return held_back


class TimestampMark:
    """The high-water mark of telemetry timestamps, kept durably across restarts.

    ``next_ms()`` proposes ``max(now_ms, last_ts_ms + 1)``; ``commit(ts)`` makes it the new
    high-water mark (written with :func:`write_atomic` first). The file is read once, here;
    afterwards the mark lives in memory and each commit writes a few bytes. A mark more than
    :data:`MAX_MARK_AHEAD_S` ahead of the clock, when read or at ``next_ms()`` /
    ``advance_to_now()``, is discarded with a warning. Nothing here raises for the file: a
    mark that cannot be read or saved costs accuracy after a restart, never a message.
    Callers serialise the calls (the link's enqueue lock). ``monotonic`` paces warnings.
    """

    def __init__(
        self,
        path: Path,
        clock: Callable[[], float],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._path = path
        self._clock = clock
        self._dir_ready = False
        self._save_failing = False
        self._discard_warnings = _Throttle(monotonic)
        self.clock_s: float | None = None
        """The clock's latest reading here (``None`` before the first): what was queued is
        judged against it without reading the clock once more per message sent."""
        self._last_ms = self._load()

    @property
    def path(self) -> Path:
        return self._path

    @property
    def last_ms(self) -> int:
        return self._last_ms

    def _load(self) -> int:
        """The saved mark, or 0: a missing or damaged mark must not stop the link."""
        path = self._path
        # An interrupted write leaves its temporary file; this process owns the directory.
        remove_stale_temp_files(path, older_than=0)
        try:
            text = read_text_or_none(path, max_bytes=MAX_MARK_BYTES)
        except (OSError, ValueError) as exc:
            logger.warning("Cannot read the telemetry timestamp mark {} ({}); ignored", path, exc)
            return 0
        if text is None:
            return 0
        value = parse_mark(text)
        if value is None:
            logger.warning("Telemetry timestamp mark {} is not a number; ignored", path)
            return 0
        return self._credible(value, self.read_clock())

    def read_clock(self) -> float:
        """The clock now (remembered as :attr:`clock_s`)."""
        self.clock_s = self._clock()
        return self.clock_s

    def _credible(self, mark_ms: int, now_s: float) -> int:
        """``mark_ms`` if credible at ``now_s``; else 0, with a (rate-limited) warning."""
        kept = credible_mark(mark_ms, now_s)
        if kept != mark_ms and (held_back := self._discard_warnings.allow()) is not None:
            logger.warning(
                "Telemetry timestamp mark {} is {:.1f} days ahead of the clock (more than "
                "{:.0f} h); discarded, telemetry timestamps follow the clock again{}",
                self._path,
                (mark_ms / 1000 - now_s) / 86400,
                MAX_MARK_AHEAD_S / 3600,
                f" ({held_back} more discard(s) since the previous warning)" if held_back else "",
            )
        return kept

    def next_ms(self) -> int:
        now_s = self.read_clock()
        self._last_ms = self._credible(self._last_ms, now_s)
        return next_stamp_ms(now_s, self._last_ms)

    def advance_to_now(self) -> None:
        """Raise the mark to the clock's now (an attribute message just arrived): every later
        ``ts`` is after it. Written like a commit; a no-op when the mark is already ahead
        (and credible)."""
        now_s = self.read_clock()
        self._last_ms = self._credible(self._last_ms, now_s)
        now_ms = int(now_s * 1000)
        if now_ms > self._last_ms:
            self.commit(now_ms)

    def commit(self, ts_ms: int) -> None:
        """Remember ``ts_ms`` (in memory always; on disk unless that fails).

        A failed write does not fail the message: losing the mark only matters after a
        restart with the clock behind, losing the message would matter now. The first
        failure is a warning, and saving again an info line; nothing per message between.
        """
        self._last_ms = max(self._last_ms, ts_ms)
        try:
            if not self._dir_ready:
                ensure_dir(self._path.parent)
                self._dir_ready = True
            write_atomic(self._path, format_mark(self._last_ms))
        except OSError as exc:
            self._dir_ready = False  # created again next time, if it was removed
            if not self._save_failing:
                self._save_failing = True
                logger.warning(
                    "Cannot save the telemetry timestamp mark {} ({}); after a restart with "
                    "the clock behind, ThingsBoard may ignore new values until it catches up "
                    "(kept in memory; retried at every message)",
                    self._path,
                    exc,
                )
            return
        if self._save_failing:
            self._save_failing = False
            logger.info("Telemetry timestamp mark {} is saved again", self._path)
