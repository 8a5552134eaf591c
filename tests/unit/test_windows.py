"""Maintenance windows (issue 15): parsing, wall-clock membership and the next opening,
in UTC and across the 2026 DST changes of Europe/Berlin and America/New_York, with a fake
clock that jumps. No sleeping: every instant is an argument."""

from __future__ import annotations

import datetime as dt
import math
from zoneinfo import ZoneInfo

import pytest

from teg_ota.domain.core.windows import (
    MAX_WINDOWS,
    InvalidWindows,
    Window,
    describe,
    in_window,
    next_opening,
    parse_windows,
)
from tests.unit.fakes import FakeClock

UTC = dt.UTC
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    """POSIX seconds of a UTC wall time: ``utc(2026, 3, 29, 1, 0)``."""
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


def local(epoch_s: float, tz: dt.tzinfo) -> str:
    return dt.datetime.fromtimestamp(epoch_s, tz).strftime("%Y-%m-%d %H:%M:%S %Z")


# --- parsing -------------------------------------------------------------------------


def test_the_issue_example_parses_in_order() -> None:
    assert parse_windows("02:00-04:00,13:00-13:30") == (Window(120, 240), Window(780, 810))


def test_spaces_around_parts_and_the_dash_are_allowed() -> None:
    assert parse_windows("  02:00 - 04:00 ,\t13:00-13:30  ") == (
        Window(120, 240),
        Window(780, 810),
    )


@pytest.mark.parametrize("text", ["", " ", "\t \n"])
def test_empty_text_means_no_windows(text: str) -> None:
    assert parse_windows(text) == ()


def test_a_window_may_cross_midnight_and_end_at_24_00() -> None:
    assert parse_windows("23:00-01:00") == (Window(23 * 60, 60),)
    assert parse_windows("22:00-24:00") == (Window(22 * 60, 0),)
    assert parse_windows("23:59-00:00") == (Window(23 * 60 + 59, 0),)
    assert parse_windows("00:00-23:59") == (Window(0, 23 * 60 + 59),)


def test_duplicates_are_kept_and_48_windows_are_allowed() -> None:
    assert parse_windows("01:00-02:00,01:00-02:00") == (Window(60, 120), Window(60, 120))
    many = ",".join(f"{h:02d}:{m:02d}-{h:02d}:{m + 10:02d}" for h in range(24) for m in (0, 30))
    assert len(parse_windows(many)) == MAX_WINDOWS == 48


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("02:00-04:00,", r"update window 2 is empty \(a stray comma\?\)"),
        (",02:00-04:00", "update window 1 is empty"),
        ("02:00-04:00,,13:00-13:30", "update window 2 is empty"),
        ("2:00-04:00", r"update window 1 '2:00-04:00' is not HH:MM-HH:MM"),
        ("02:00", r"update window 1 '02:00' is not HH:MM-HH:MM"),
        ("02:00-04:00-05:00", "is not HH:MM-HH:MM"),
        ("02:00 04:00", "is not HH:MM-HH:MM"),
        ("02.00-04.00", "is not HH:MM-HH:MM"),
        ("02:00\u201304:00", "is not HH:MM-HH:MM"),  # an en dash
        ("\u0660\u0662:00-04:00", "is not HH:MM-HH:MM"),  # Arabic-Indic digits
        ("night", r"update window 1 'night' is not HH:MM-HH:MM"),
        ("01:00-02:00,25:00-26:00", r"update window 2 '25:00-26:00': start hour 25 is not 00-23"),
        ("24:00-02:00", "start hour 24 is not 00-23$"),
        ("02:00-24:30", r"end hour 24 is not 00-23 \(24:00 only as an end\)"),
        ("02:00-25:00", "end hour 25 is not 00-23"),
        ("02:60-03:00", "start minute 60 is not 00-59"),
        ("02:00-03:75", "end minute 75 is not 00-59"),
        ("03:00-03:00", r"'03:00-03:00' starts where it ends; leave the windows empty"),
        ("00:00-24:00", r"'00:00-24:00' starts where it ends; leave the windows empty"),
    ],
)
def test_bad_windows_are_refused_naming_the_part(text: str, message: str) -> None:
    with pytest.raises(InvalidWindows, match=message):
        parse_windows(text)


def test_more_than_48_windows_are_refused() -> None:
    with pytest.raises(InvalidWindows, match="at most 48 update windows, got 49"):
        parse_windows(",".join(["01:00-02:00"] * 49))


def test_invalid_windows_is_a_value_error() -> None:
    assert issubclass(InvalidWindows, ValueError)


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (-1, 60, "window start must be a whole minute 0..1439 after midnight, got -1"),
        (0, 1440, "window end must be a whole minute 0..1439 after midnight, got 1440"),
        (True, 60, "window start must be a whole minute"),
        (1.5, 60, "window start must be a whole minute"),
        (90, 90, "window 01:30-01:30 starts where it ends"),
    ],
)
def test_a_window_built_by_hand_is_checked(start: object, end: object, message: str) -> None:
    with pytest.raises(InvalidWindows, match=message):
        Window(start, end)  # type: ignore[arg-type]


def test_a_window_is_frozen() -> None:
    window = Window(60, 120)
    with pytest.raises(AttributeError):
        window.start_min = 0  # type: ignore[misc]


def test_describe_and_str() -> None:
    windows = parse_windows("02:00-04:00,13:00-13:30, 23:00-01:00,22:00-24:00")
    assert str(windows[0]) == "02:00-04:00"
    assert describe(windows) == "02:00-04:00, 13:00-13:30, 23:00-01:00, 22:00-00:00"
    assert describe(()) == ""
    assert parse_windows(describe(windows)) == windows
    assert parse_windows(describe(())) == ()


# --- UTC and crossing midnight -------------------------------------------------------


def test_no_windows_always_allows_and_opens_at_once() -> None:
    t = utc(2026, 3, 29, 1, 30) + 0.25
    assert in_window((), t, BERLIN)
    assert next_opening((), t, BERLIN) == t


def test_membership_is_half_open_in_utc() -> None:
    windows = parse_windows("02:00-04:00")
    assert not in_window(windows, utc(2026, 6, 1, 1, 59, 59), UTC)
    assert in_window(windows, utc(2026, 6, 1, 2, 0), UTC)
    assert in_window(windows, utc(2026, 6, 1, 3, 59, 59) + 0.999, UTC)
    assert not in_window(windows, utc(2026, 6, 1, 4, 0), UTC)


def test_next_opening_in_utc_is_exact_and_inside_means_now() -> None:
    windows = parse_windows("13:00-13:30,02:00-04:00")
    assert next_opening(windows, utc(2026, 6, 1, 1, 59, 59) + 0.5, UTC) == utc(2026, 6, 1, 2)
    assert next_opening(windows, utc(2026, 6, 1, 4, 0), UTC) == utc(2026, 6, 1, 13)
    assert next_opening(windows, utc(2026, 6, 1, 13, 30), UTC) == utc(2026, 6, 2, 2)
    inside = utc(2026, 6, 1, 3, 12, 7) + 0.125
    assert next_opening(windows, inside, UTC) == inside


def test_a_window_crossing_midnight() -> None:
    windows = parse_windows("23:00-01:00")
    assert not in_window(windows, utc(2026, 6, 1, 22, 59, 59), UTC)
    assert in_window(windows, utc(2026, 6, 1, 23, 0), UTC)
    assert in_window(windows, utc(2026, 6, 2, 0, 0), UTC)
    assert in_window(windows, utc(2026, 6, 2, 0, 59, 59), UTC)
    assert not in_window(windows, utc(2026, 6, 2, 1, 0), UTC)
    assert next_opening(windows, utc(2026, 6, 2, 1, 0), UTC) == utc(2026, 6, 2, 23, 0)
    assert next_opening(windows, utc(2026, 6, 2, 0, 30), UTC) == utc(2026, 6, 2, 0, 30)


def test_a_window_ending_at_24_00_closes_at_midnight() -> None:
    windows = parse_windows("22:00-24:00")
    assert in_window(windows, utc(2026, 6, 1, 23, 59, 59), UTC)
    assert not in_window(windows, utc(2026, 6, 2, 0, 0), UTC)
    assert next_opening(windows, utc(2026, 6, 2, 0, 0), UTC) == utc(2026, 6, 2, 22, 0)


def test_a_fixed_offset_zone() -> None:
    india = dt.timezone(dt.timedelta(hours=5, minutes=30))
    windows = parse_windows("02:00-04:00")
    assert next_opening(windows, utc(2026, 6, 1, 0, 0), india) == utc(2026, 6, 1, 20, 30)
    assert in_window(windows, utc(2026, 6, 1, 20, 30), india)


# --- Europe/Berlin, spring forward: 29 March 2026, 02:00 CET -> 03:00 CEST (01:00 UTC) -


SPRING_GAP = utc(2026, 3, 29, 1, 0)


def test_the_spring_forward_instant_is_what_the_tests_assume() -> None:
    assert local(SPRING_GAP - 1, BERLIN) == "2026-03-29 01:59:59 CET"
    assert local(SPRING_GAP, BERLIN) == "2026-03-29 03:00:00 CEST"


def test_a_window_wholly_in_the_skipped_hour_does_not_open_that_day() -> None:
    windows = parse_windows("02:00-02:30")
    day_start = utc(2026, 3, 28, 23, 0)  # 00:00 CET
    assert not any(in_window(windows, day_start + 60 * m, BERLIN) for m in range(23 * 60))
    opening = next_opening(windows, day_start, BERLIN)
    assert opening == utc(2026, 3, 30, 0, 0)
    assert local(opening, BERLIN) == "2026-03-30 02:00:00 CEST"
    # The day before, it opened as usual (02:00 CET).
    assert next_opening(windows, utc(2026, 3, 27, 23, 0), BERLIN) == utc(2026, 3, 28, 1, 0)


def test_a_window_starting_in_the_skipped_hour_opens_after_the_gap() -> None:
    windows = parse_windows("02:00-04:00")
    assert not in_window(windows, SPRING_GAP - 1, BERLIN)
    assert in_window(windows, SPRING_GAP, BERLIN)
    for start in (utc(2026, 3, 28, 23, 0), utc(2026, 3, 29, 0, 59, 59) + 0.5):
        assert next_opening(windows, start, BERLIN) == SPRING_GAP
    # It still closes at 04:00 CEST: open one hour of wall-clock time that day.
    assert in_window(windows, utc(2026, 3, 29, 1, 59, 59), BERLIN)
    assert not in_window(windows, utc(2026, 3, 29, 2, 0), BERLIN)


def test_a_window_straddling_the_gap_end_opens_at_the_gap() -> None:
    windows = parse_windows("02:30-03:30")
    assert next_opening(windows, utc(2026, 3, 28, 23, 0), BERLIN) == SPRING_GAP
    assert not in_window(windows, utc(2026, 3, 29, 1, 30), BERLIN)  # 03:30 CEST


def test_a_window_after_the_gap_opens_at_its_summer_time_start() -> None:
    windows = parse_windows("03:00-04:00,04:15-04:45")
    assert next_opening(windows, utc(2026, 3, 28, 23, 0), BERLIN) == SPRING_GAP
    assert next_opening(windows, utc(2026, 3, 29, 2, 0), BERLIN) == utc(2026, 3, 29, 2, 15)


# --- Europe/Berlin, fall back: 25 October 2026, 03:00 CEST -> 02:00 CET (01:00 UTC) ----


FALL_BACK = utc(2026, 10, 25, 1, 0)


def test_the_fall_back_instant_is_what_the_tests_assume() -> None:
    assert local(FALL_BACK - 1, BERLIN) == "2026-10-25 02:59:59 CEST"
    assert local(FALL_BACK, BERLIN) == "2026-10-25 02:00:00 CET"


def test_a_window_in_the_repeated_hour_is_open_in_both_passes() -> None:
    windows = parse_windows("02:30-03:30")
    first_pass = utc(2026, 10, 25, 0, 30)  # 02:30 CEST
    second_pass = utc(2026, 10, 25, 1, 30)  # 02:30 CET
    assert local(second_pass, BERLIN) == "2026-10-25 02:30:00 CET"
    assert not in_window(windows, first_pass - 1, BERLIN)
    assert in_window(windows, first_pass, BERLIN)
    assert in_window(windows, FALL_BACK - 1, BERLIN)
    assert not in_window(windows, FALL_BACK, BERLIN)  # 02:00 CET: before 02:30 again
    assert not in_window(windows, second_pass - 1, BERLIN)
    assert in_window(windows, second_pass, BERLIN)
    assert in_window(windows, utc(2026, 10, 25, 2, 29, 59), BERLIN)  # 03:29:59 CET
    assert not in_window(windows, utc(2026, 10, 25, 2, 30), BERLIN)

    assert next_opening(windows, utc(2026, 10, 24, 23, 0), BERLIN) == first_pass
    assert next_opening(windows, FALL_BACK, BERLIN) == second_pass
    assert next_opening(windows, utc(2026, 10, 25, 2, 30), BERLIN) == utc(2026, 10, 26, 1, 30)


def test_the_second_pass_of_a_repeated_start_is_an_opening() -> None:
    windows = parse_windows("02:00-02:30")
    assert next_opening(windows, utc(2026, 10, 24, 23, 0), BERLIN) == utc(2026, 10, 25, 0, 0)
    assert next_opening(windows, utc(2026, 10, 25, 0, 40), BERLIN) == FALL_BACK


def test_a_window_the_clock_falls_back_into_opens_at_the_jump() -> None:
    windows = parse_windows("01:30-02:30")
    assert in_window(windows, utc(2026, 10, 25, 0, 29, 59), BERLIN)  # 02:29:59 CEST
    assert not in_window(windows, utc(2026, 10, 25, 0, 30), BERLIN)  # 02:30 CEST
    assert next_opening(windows, utc(2026, 10, 25, 0, 45), BERLIN) == FALL_BACK
    assert next_opening(windows, utc(2026, 10, 25, 1, 30), BERLIN) == utc(2026, 10, 26, 0, 30)


# --- America/New_York: 8 March 2026, 02:00 EST -> 03:00 EDT (07:00 UTC) ---------------


def test_new_york_spring_forward_skips_a_window_in_the_gap() -> None:
    windows = parse_windows("02:00-03:00")
    midnight_est = utc(2026, 3, 8, 5, 0)
    assert local(midnight_est, NEW_YORK) == "2026-03-08 00:00:00 EST"
    opening = next_opening(windows, midnight_est, NEW_YORK)
    assert opening == utc(2026, 3, 9, 6, 0)
    assert local(opening, NEW_YORK) == "2026-03-09 02:00:00 EDT"
    assert next_opening(parse_windows("02:00-03:01"), midnight_est, NEW_YORK) == utc(
        2026, 3, 8, 7, 0
    )


# --- a clock that jumps --------------------------------------------------------------


def test_a_clock_that_jumps_gets_answers_that_depend_only_on_the_instant() -> None:
    windows = parse_windows("02:00-04:00,13:00-13:30")
    clock = FakeClock(start=utc(2026, 3, 29, 0, 30))
    instants = [
        utc(2026, 3, 29, 0, 30),  # before the spring gap
        0.0,  # the RTC lost: 1970
        utc(2040, 7, 1, 10, 0),  # a far-future NTP step (12:00 CEST)
        utc(2026, 10, 25, 1, 10),  # back into the repeated hour
        utc(2026, 3, 29, 0, 30),  # and back again
    ]
    answers = []
    for instant in instants:
        clock.wall = instant  # the jump
        clock.advance(0.5)
        answers.append(
            (in_window(windows, clock.now(), BERLIN), next_opening(windows, clock.now(), BERLIN))
        )
    fresh = [
        (in_window(windows, t + 0.5, BERLIN), next_opening(windows, t + 0.5, BERLIN))
        for t in reversed(instants)
    ]
    assert answers == list(reversed(fresh))
    assert answers[0] == (False, SPRING_GAP)
    assert answers[0] == answers[-1]
    assert answers[1] == (False, utc(1970, 1, 1, 1, 0))  # 02:00 CET on 1 January 1970
    assert answers[2] == (False, utc(2040, 7, 1, 11, 0))  # 13:00 CEST
    inside = utc(2026, 10, 25, 1, 10) + 0.5  # 02:10:00.5 CET, inside 02:00-04:00
    assert answers[3] == (True, inside)


def test_a_jump_into_a_window_opens_at_once() -> None:
    windows = parse_windows("02:00-04:00")
    clock = FakeClock(start=utc(2026, 10, 24, 12, 0))
    assert not in_window(windows, clock.now(), BERLIN)
    clock.wall = utc(2026, 10, 25, 1, 10)  # 02:10 CET
    assert in_window(windows, clock.now(), BERLIN)
    assert next_opening(windows, clock.now(), BERLIN) == clock.now()


# --- properties over many instants ---------------------------------------------------


_LAYOUTS = [
    "02:00-04:00,13:00-13:30",
    "02:00-02:30",
    "02:30-03:30",
    "01:30-02:30",
    "23:00-01:00,02:59-03:01",
    "00:00-23:59",
    "12:00-12:01",
]
_ZONES: list[dt.tzinfo] = [UTC, BERLIN, NEW_YORK]
_AROUND = [
    utc(2026, 3, 28, 20, 0),  # Berlin spring forward
    utc(2026, 10, 24, 20, 0),  # Berlin fall back
    utc(2026, 3, 7, 20, 0),  # New York spring forward
    utc(2026, 10, 31, 20, 0),  # New York fall back (1 November 2026)
]


@pytest.mark.parametrize("layout", _LAYOUTS)
def test_next_opening_is_the_earliest_open_instant(layout: str) -> None:
    windows = parse_windows(layout)
    checked = 0
    for tz in _ZONES:
        for base in _AROUND:
            # Every 37 minutes and 13.25 seconds over ~30 hours around the change.
            for step in range(50):
                t = base + step * (37 * 60 + 13.25)
                opening = next_opening(windows, t, tz)
                assert opening is not None
                assert opening >= t
                assert in_window(windows, opening, tz), (layout, local(opening, tz))
                if opening > t:
                    # Exact to the second: the second before is still closed ...
                    assert not in_window(windows, max(t, opening - 1), tz)
                    # ... and so is every whole minute between t and the opening.
                    minute = math.ceil(t / 60) * 60
                    while minute < opening:
                        assert not in_window(windows, minute, tz), (layout, local(minute, tz))
                        minute += 60
                checked += 1
    assert checked == len(_ZONES) * len(_AROUND) * 50


# --- the safety net for zones whose conversions disagree -----------------------------


class _LyingZone(dt.tzinfo):
    """Shows UTC wall time but claims +05:00, so no converted start is ever verified."""

    def utcoffset(self, when: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(hours=5)

    def dst(self, when: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(0)

    def tzname(self, when: dt.datetime | None) -> str:
        return "LIE"

    def fromutc(self, when: dt.datetime) -> dt.datetime:
        return when.replace(tzinfo=self)


class _StoppedZone(_LyingZone):
    """A wall clock stuck at noon: a window at night never opens."""

    def fromutc(self, when: dt.datetime) -> dt.datetime:
        return when.replace(hour=12, minute=0, second=0, microsecond=0, tzinfo=self)


def test_a_zone_whose_conversions_disagree_falls_back_to_stepping() -> None:
    windows = parse_windows("10:00-11:00")
    assert next_opening(windows, 0.5, _LyingZone()) == 36_000.0
    assert next_opening(windows, 36_000.0, _LyingZone()) == 36_000.0


def test_a_window_that_never_opens_gives_none() -> None:
    assert next_opening(parse_windows("02:00-03:00"), 0.0, _StoppedZone()) is None
    assert next_opening(parse_windows("11:00-13:00"), 0.0, _StoppedZone()) == 0.0
