"""Maintenance windows (issue 15): when a prepared assignment may be swapped in.

``TEG_UPDATE_WINDOWS`` holds one or more daily windows in local time, comma-separated,
e.g. ``02:00-04:00,13:00-13:30``. No windows (the variable empty) means always allowed.
Outside a window an assignment is prepared at once and swapped at the next window's start.

A window is ``[start, end)`` on the local wall clock, in whole minutes after midnight. An
end at or before the start crosses midnight (``23:00-01:00``); ``24:00`` is accepted as an
end and means midnight (it is kept as ``00:00``). A window that starts where it ends is
refused: leave the variable empty for "always".

Decision: membership is by the **wall-clock time** the instant shows in the zone.

* On a spring-forward day (Europe/Berlin, 29 March 2026, 02:00 CET -> 03:00 CEST) the
  skipped wall times never occur: a window lying wholly in the skipped hour
  (``02:00-02:30``) does not open that day, and one that starts inside it (``02:00-04:00``)
  opens at the first wall-clock minute after the gap (03:00 CEST).
* On a fall-back day (25 October 2026, 03:00 CEST -> 02:00 CET) the repeated wall times
  occur twice: a window in the repeated hour (``02:30-03:30``) is open during both passes,
  and one the clock jumps back into (``01:30-02:30``) opens again at the jump.
* A clock that jumps (NTP step, RTC reset, a gateway that booted in 1970) needs nothing
  here: nothing is remembered, every answer depends only on the instant it is given, and
  the caller re-asks with the current time after a jump.

Pure: the standard library only; the instant and the zone are always arguments.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "MAX_WINDOWS",
    "InvalidWindows",
    "Window",
    "describe",
    "in_window",
    "next_opening",
    "parse_windows",
]

MAX_WINDOWS = 48
"""At most this many windows (one every half hour is already more than anyone needs)."""

_MINUTES_PER_DAY = 24 * 60
_SEARCH_DAYS = 3
"""Local days after today whose window starts are candidates (one always opens in two)."""
_SCAN_STEP_S = 3600
"""Offset changes are looked for at this step, then pinned to the second by bisection."""
_SCAN_HORIZON_S = (_SEARCH_DAYS + 2) * 86400
"""Covers every candidate instant the day search can produce."""
_FALLBACK_MINUTES = (_SEARCH_DAYS + 5) * _MINUTES_PER_DAY
"""Bound of the minute-stepping safety net, for a zone whose conversions do not agree."""

_WINDOW = re.compile(r"([0-9]{2}):([0-9]{2})\s*-\s*([0-9]{2}):([0-9]{2})")


class InvalidWindows(ValueError):
    """``TEG_UPDATE_WINDOWS`` (or a window built by hand) does not describe daily windows."""


@dataclass(frozen=True, slots=True)
class Window:
    """One daily window ``[start_min, end_min)`` in minutes after local midnight.

    ``end_min <= start_min`` crosses midnight; ``start_min == end_min`` is refused.
    """

    start_min: int
    end_min: int

    def __post_init__(self) -> None:
        for name, value in (("start", self.start_min), ("end", self.end_min)):
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or not 0 <= value < _MINUTES_PER_DAY
            ):
                raise InvalidWindows(
                    f"window {name} must be a whole minute 0..{_MINUTES_PER_DAY - 1} "
                    f"after midnight, got {value!r}"
                )
        if self.start_min == self.end_min:
            raise InvalidWindows(
                f"window {self} starts where it ends; leave the windows empty for 'always'"
            )

    def __str__(self) -> str:
        return f"{_hhmm(self.start_min)}-{_hhmm(self.end_min)}"


def _contains(window: Window, minute_of_day: int) -> bool:
    """Whether the wall-clock minute ``minute_of_day`` (0..1439) lies in ``window``."""
    if window.start_min < window.end_min:
        return window.start_min <= minute_of_day < window.end_min
    return minute_of_day >= window.start_min or minute_of_day < window.end_min


def _hhmm(minute_of_day: int) -> str:
    return f"{minute_of_day // 60:02d}:{minute_of_day % 60:02d}"


def parse_windows(text: str) -> tuple[Window, ...]:
    """``"02:00-04:00, 13:00-13:30"`` -> the windows, in the order given.

    Empty or blank text gives ``()`` (always allowed). Duplicates are kept. Anything else
    that is not ``HH:MM-HH:MM`` (hours 00-23, minutes 00-59, ``24:00`` as an end only),
    comma-separated, at most ``MAX_WINDOWS`` of them, raises :class:`InvalidWindows`
    naming the bad part.
    """
    if not text.strip():
        return ()
    parts = text.split(",")
    if len(parts) > MAX_WINDOWS:
        raise InvalidWindows(f"at most {MAX_WINDOWS} update windows, got {len(parts)}")
    return tuple(_parse_one(part.strip(), number) for number, part in enumerate(parts, 1))


def _parse_one(part: str, number: int) -> Window:
    where = f"update window {number} {part!r}"
    if not part:
        raise InvalidWindows(f"update window {number} is empty (a stray comma?)")
    match = _WINDOW.fullmatch(part)
    if match is None:
        raise InvalidWindows(f"{where} is not HH:MM-HH:MM (e.g. 02:00-04:00)")
    start_h, start_m, end_h, end_m = (int(group) for group in match.groups())
    start = _minute_of_day(where, "start", start_h, start_m, end=False)
    end = _minute_of_day(where, "end", end_h, end_m, end=True)
    if start == end:
        raise InvalidWindows(f"{where} starts where it ends; leave the windows empty for 'always'")
    return Window(start, end)


def _minute_of_day(where: str, name: str, hours: int, minutes: int, *, end: bool) -> int:
    if end and (hours, minutes) == (24, 0):
        return 0
    if hours > 23:
        allowed = "00-23 (24:00 only as an end)" if end else "00-23"
        raise InvalidWindows(f"{where}: {name} hour {hours:02d} is not {allowed}")
    if minutes > 59:
        raise InvalidWindows(f"{where}: {name} minute {minutes:02d} is not 00-59")
    return hours * 60 + minutes


def describe(windows: Sequence[Window]) -> str:
    """``"02:00-04:00, 13:00-13:30"``, for log lines and the ``update_deferred`` text.

    No windows give ``""``; ``parse_windows(describe(ws)) == tuple(ws)``.
    """
    return ", ".join(str(window) for window in windows)


def in_window(windows: Sequence[Window], epoch_s: float, tz: dt.tzinfo) -> bool:
    """Whether a swap is allowed at the instant ``epoch_s`` (POSIX seconds) in zone ``tz``.

    True with no windows; otherwise when the wall-clock time the instant shows in ``tz``
    lies in ``[start, end)`` of a window (see the module docstring for DST).
    """
    if not windows:
        return True
    local = dt.datetime.fromtimestamp(epoch_s, tz)
    minute_of_day = local.hour * 60 + local.minute
    return any(_contains(window, minute_of_day) for window in windows)


def next_opening(windows: Sequence[Window], epoch_s: float, tz: dt.tzinfo) -> float | None:
    """The earliest instant ``>= epoch_s`` at which :func:`in_window` is true.

    ``epoch_s`` itself when already inside a window (or with no windows). Exact to the
    second and correct across DST changes: the wall clock only enters a window where it
    reaches a window start (each start on each of the next local days, converted with both
    ``fold`` values so both passes of a repeated hour count, and a start in a gap lands
    after the gap) or where it jumps (the zone's offset changes, pinned to the second).
    Every candidate is checked with :func:`in_window`, the earliest that passes wins.
    ``None`` only for a zone so inconsistent that a bounded minute-by-minute search finds
    no opening either (never for ``zoneinfo`` zones or fixed offsets).
    """
    if in_window(windows, epoch_s, tz):
        return epoch_s
    candidates = sorted(
        c
        for c in (*_start_instants(windows, epoch_s, tz), *_offset_changes(epoch_s, tz))
        if c >= epoch_s
    )
    for candidate in candidates:
        if in_window(windows, candidate, tz):
            return candidate
    return _step_search(windows, epoch_s, tz)


def _start_instants(windows: Sequence[Window], epoch_s: float, tz: dt.tzinfo) -> set[float]:
    """Each window start on each local day from yesterday to ``_SEARCH_DAYS`` ahead.

    ``fold=0`` is the first pass of a repeated wall time, ``fold=1`` the second; for a wall
    time skipped by a gap, ``fold=0`` reads it with the offset before the gap, which lands
    after the gap (the first wall-clock minute after it then decides, via in_window).
    """
    today = dt.datetime.fromtimestamp(epoch_s, tz).date()
    instants: set[float] = set()
    for day_offset in range(-1, _SEARCH_DAYS + 1):
        day = today + dt.timedelta(days=day_offset)
        for window in windows:
            wall = dt.datetime.combine(
                day, dt.time(window.start_min // 60, window.start_min % 60), tz
            )
            for fold in (0, 1):
                instants.add(wall.replace(fold=fold).timestamp())
    return instants


def _offset_changes(epoch_s: float, tz: dt.tzinfo) -> list[float]:
    """The instants after ``epoch_s`` (within the horizon) where ``tz``'s offset changes.

    Sampled every ``_SCAN_STEP_S`` (zones change offset months apart), then bisected to the
    first second of the new offset.
    """
    changes: list[float] = []
    low = math.floor(epoch_s)
    low_offset = _offset(low, tz)
    for high in range(low + _SCAN_STEP_S, low + _SCAN_HORIZON_S + 1, _SCAN_STEP_S):
        high_offset = _offset(high, tz)
        if high_offset != low_offset:
            changes.append(float(_first_second_of(low, high, low_offset, tz)))
        low, low_offset = high, high_offset
    return changes


def _first_second_of(low: int, high: int, low_offset: dt.timedelta | None, tz: dt.tzinfo) -> int:
    """The first second in ``(low, high]`` whose offset differs from ``low_offset``."""
    while high - low > 1:
        middle = (low + high) // 2
        if _offset(middle, tz) == low_offset:
            low = middle
        else:
            high = middle
    return high


def _offset(epoch_s: int, tz: dt.tzinfo) -> dt.timedelta | None:
    return dt.datetime.fromtimestamp(epoch_s, tz).utcoffset()


def _step_search(windows: Sequence[Window], epoch_s: float, tz: dt.tzinfo) -> float | None:
    """Safety net: walk whole minutes (bounded), then pin the opening to the second."""
    previous = epoch_s
    minute = math.ceil(epoch_s / 60) * 60
    for _ in range(_FALLBACK_MINUTES):
        if in_window(windows, minute, tz):
            for second in range(math.floor(previous) + 1, minute + 1):
                if in_window(windows, second, tz):
                    return float(second)
        previous = minute
        minute += 60
    return None
