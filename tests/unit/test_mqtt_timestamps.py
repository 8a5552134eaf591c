"""Telemetry timestamps (teg_ota.adapters.mqtt.timestamps), without a broker: when a message
is sent flat, the never-backwards rule, the far-future mark rule and the mark file's format
as pure functions, then the mark on tmp_path.

The integration suite shows the whole story through Mosquitto (clock steps, restarts,
reconnects); here each case is pinned on its own, including the damaged-file ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from loguru import logger

from teg_ota.adapters.atomic_file import temp_prefix
from teg_ota.adapters.mqtt import timestamps as timestamps_module
from teg_ota.adapters.mqtt.timestamps import (
    LAST_TS_FILE_NAME,
    LINK_STATE_DIR_NAME,
    LIVE_WINDOW_S,
    MAX_MARK_AHEAD_S,
    MAX_MARK_BYTES,
    TimestampMark,
    credible_mark,
    format_mark,
    is_live,
    mark_is_credible,
    mark_path,
    next_stamp_ms,
    parse_mark,
)

NOW_S = 1_700_000_000.0
NOW_MS = 1_700_000_000_000


class SettableClock:
    """Unix seconds as set by the test; it may go backwards."""

    def __init__(self, now: float = NOW_S) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def warnings_log() -> Iterator[list[str]]:
    messages: list[str] = []
    logger.enable("teg_ota")
    sink = logger.add(lambda message: messages.append(message.record["message"]), level="WARNING")
    yield messages
    logger.remove(sink)


# --------------------------------------------------------------------------- flat or stamped


def test_the_live_window_is_a_few_seconds() -> None:
    assert LIVE_WINDOW_S == 5.0


@pytest.mark.parametrize(
    ("queued_at", "now", "live"),
    [
        (100.0, 100.0, True),  # sent at once
        (100.0, 100.0 + LIVE_WINDOW_S, True),  # inclusive
        (100.0, 100.0 + LIVE_WINDOW_S + 0.001, False),  # waited too long: keeps its ts
        (None, 100.0, False),  # queued while offline (or by an earlier run)
        (100.0, 99.0, False),  # a monotonic clock never does this; not live if it did
    ],
)
def test_only_a_message_queued_while_connected_and_sent_soon_goes_out_flat(
    queued_at: float | None, now: float, live: bool
) -> None:
    assert is_live(queued_at, now) is live


# --------------------------------------------------------------------------- far-future marks


def test_a_mark_up_to_a_day_ahead_of_the_clock_is_credible() -> None:
    assert MAX_MARK_AHEAD_S == 86_400
    assert mark_is_credible(0, NOW_S)
    assert mark_is_credible(NOW_MS, NOW_S)
    assert mark_is_credible(NOW_MS + 86_400_000, NOW_S)  # inclusive
    assert not mark_is_credible(NOW_MS + 86_400_001, NOW_S)
    assert not mark_is_credible(NOW_MS + 365 * 86_400_000, NOW_S)


# --------------------------------------------------------------------------- the rule


def test_next_stamp_is_now_while_the_clock_is_ahead() -> None:
    assert next_stamp_ms(NOW_S, 0) == NOW_MS
    assert next_stamp_ms(NOW_S, NOW_MS - 1) == NOW_MS


def test_next_stamp_follows_the_last_when_the_clock_is_not_ahead() -> None:
    assert next_stamp_ms(NOW_S, NOW_MS) == NOW_MS + 1  # same millisecond
    assert next_stamp_ms(NOW_S - 3600, NOW_MS) == NOW_MS + 1  # clock stepped back


def test_next_stamp_truncates_to_the_millisecond() -> None:
    assert next_stamp_ms(1.0009, 0) == 1000
    assert next_stamp_ms(1_700_000_000.1239, 0) == 1_700_000_000_123


@given(
    now_s=st.floats(min_value=0, max_value=4_000_000_000, allow_nan=False),
    last_ms=st.integers(min_value=0, max_value=4_000_000_000_000),
)
def test_next_stamp_is_after_the_last_and_never_before_now(now_s: float, last_ms: int) -> None:
    stamp = next_stamp_ms(now_s, last_ms)
    assert stamp > last_ms
    assert stamp >= int(now_s * 1000)
    assert stamp in (int(now_s * 1000), last_ms + 1)


# --------------------------------------------------------------------------- the mark file format


def test_mark_lives_in_the_link_directory_of_the_outbox() -> None:
    outbox = Path("/data/outbox")
    assert mark_path(outbox) == outbox / LINK_STATE_DIR_NAME / LAST_TS_FILE_NAME
    assert mark_path(outbox) == Path("/data/outbox/link/telemetry_last_ts")


def test_format_mark_is_decimal_digits_and_a_newline() -> None:
    assert format_mark(0) == b"0\n"
    assert format_mark(1_700_000_100_002) == b"1700000100002\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1700000100002\n", 1_700_000_100_002),
        ("  42 \n", 42),
        ("0", 0),
        ("9" * 16, 10**16 - 1),
    ],
)
def test_parse_mark_reads_what_format_mark_writes(text: str, expected: int) -> None:
    assert parse_mark(text) == expected


@pytest.mark.parametrize(
    "text", ["", "\n", "not a number\n", "-1", "+5", "1.5", "1e12", "12 34", "9" * 17, "١٢٣"]
)
def test_parse_mark_refuses_anything_else(text: str) -> None:
    assert parse_mark(text) is None


@given(st.integers(min_value=0, max_value=10**16 - 1))
def test_format_then_parse_round_trips(last_ms: int) -> None:
    assert parse_mark(format_mark(last_ms).decode("ascii")) == last_ms


# --------------------------------------------------------------------------- the mark on disk


def test_without_a_mark_the_clock_decides(tmp_path: Path) -> None:
    mark = TimestampMark(mark_path(tmp_path), SettableClock())
    assert mark.last_ms == 0
    assert mark.next_ms() == NOW_MS
    assert not mark.path.exists()  # nothing is written before a commit


def test_commit_saves_the_mark_and_a_new_instance_resumes_after_it(tmp_path: Path) -> None:
    path = mark_path(tmp_path)
    clock = SettableClock()
    first = TimestampMark(path, clock)
    first.commit(first.next_ms())
    assert path.read_bytes() == b"1700000000000\n"
    clock.now = NOW_S - 86_400  # a restart with the clock a day behind
    second = TimestampMark(path, clock)
    assert second.last_ms == NOW_MS
    assert second.next_ms() == NOW_MS + 1


def test_commit_never_lowers_the_mark(tmp_path: Path) -> None:
    mark = TimestampMark(mark_path(tmp_path), SettableClock())
    mark.commit(NOW_MS + 5)
    mark.commit(NOW_MS)
    assert mark.last_ms == NOW_MS + 5
    assert mark.path.read_bytes() == b"%d\n" % (NOW_MS + 5)


def test_leftover_temporary_files_are_removed_on_load(tmp_path: Path) -> None:
    path = mark_path(tmp_path)
    path.parent.mkdir()
    path.write_text("123\n")
    stale = path.parent / f"{temp_prefix(path)}interrupted"
    stale.write_text("99999")
    assert TimestampMark(path, SettableClock()).last_ms == 123
    assert sorted(p.name for p in path.parent.iterdir()) == [LAST_TS_FILE_NAME]


@pytest.mark.parametrize(
    ("content", "warning"),
    [
        (b"not a number\n", "is not a number"),
        (b"\xff\xfe\n", "Cannot read"),
        (b"1" * (MAX_MARK_BYTES + 1), "Cannot read"),
    ],
    ids=["not-a-number", "not-utf8", "too-large"],
)
def test_a_damaged_mark_is_ignored_with_a_warning(
    tmp_path: Path, warnings_log: list[str], content: bytes, warning: str
) -> None:
    path = mark_path(tmp_path)
    path.parent.mkdir()
    path.write_bytes(content)
    mark = TimestampMark(path, SettableClock())
    assert mark.last_ms == 0
    assert mark.next_ms() == NOW_MS
    assert any(warning in line for line in warnings_log), warnings_log
    mark.commit(mark.next_ms())  # the next commit repairs it
    assert path.read_bytes() == b"1700000000000\n"


def test_a_mark_far_ahead_of_the_clock_at_start_up_is_discarded_with_a_warning(
    tmp_path: Path, warnings_log: list[str]
) -> None:
    """A clock once set a year ahead, then corrected: kept, the mark would stamp every
    message a year ahead, above everything the server stamps."""
    path = mark_path(tmp_path)
    path.parent.mkdir()
    path.write_bytes(format_mark(NOW_MS + 365 * 86_400_000))
    mark = TimestampMark(path, SettableClock())
    assert mark.last_ms == 0
    assert mark.next_ms() == NOW_MS  # the clock again
    assert any("365.0 days ahead of the clock" in line for line in warnings_log), warnings_log
    mark.commit(mark.next_ms())
    assert path.read_bytes() == b"1700000000000\n"


def test_a_mark_less_than_a_day_ahead_is_kept(tmp_path: Path, warnings_log: list[str]) -> None:
    """A Pi restores its clock to about its shutdown time (fake-hwclock): slightly behind."""
    path = mark_path(tmp_path)
    path.parent.mkdir()
    path.write_bytes(format_mark(NOW_MS + 3_600_000))
    mark = TimestampMark(path, SettableClock())
    assert mark.last_ms == NOW_MS + 3_600_000
    assert mark.next_ms() == NOW_MS + 3_600_001
    assert warnings_log == []


def test_a_mark_less_than_a_day_ahead_is_kept_while_running(tmp_path: Path) -> None:
    clock = SettableClock()
    mark = TimestampMark(mark_path(tmp_path), clock)
    mark.commit(NOW_MS + 86_400_000)  # exactly a day ahead: still credible
    assert mark.next_ms() == NOW_MS + 86_400_001


def test_one_clock_reading_decades_ahead_does_not_hold_later_stamps(
    tmp_path: Path, warnings_log: list[str]
) -> None:
    """A glitch: one reading 80 years ahead stamps one message there and raises the mark.
    Kept, every later ts would stay 80 years ahead; discarded, they follow the clock."""
    clock = SettableClock()
    mark = TimestampMark(mark_path(tmp_path), clock)
    glitch_s = NOW_S + 80 * 365 * 86_400
    clock.now = glitch_s
    glitched = mark.next_ms()
    mark.commit(glitched)
    assert glitched == int(glitch_s * 1000)
    assert mark.path.read_bytes() == format_mark(glitched)
    assert warnings_log == []
    clock.now = NOW_S + 1  # the clock is right again
    assert mark.next_ms() == NOW_MS + 1000  # not glitched + 1
    assert mark.last_ms == 0
    assert len([w for w in warnings_log if "days ahead of the clock" in w]) == 1
    assert "29200.0 days ahead" in warnings_log[0]
    mark.commit(mark.next_ms())
    assert mark.path.read_bytes() == format_mark(NOW_MS + 1000)  # the file is rewritten
    clock.now = NOW_S + 2
    assert mark.next_ms() == NOW_MS + 2000
    assert len(warnings_log) == 1  # once per discard, not once per stamp


def test_advance_to_now_discards_a_mark_far_ahead(tmp_path: Path) -> None:
    clock = SettableClock()
    mark = TimestampMark(mark_path(tmp_path), clock)
    mark.commit(NOW_MS + 3 * 86_400_000)
    mark.advance_to_now()  # an assignment arrives: the mark is the clock's now again
    assert mark.last_ms == NOW_MS
    assert mark.path.read_bytes() == format_mark(NOW_MS)
    assert mark.next_ms() == NOW_MS + 1


def test_discard_warnings_are_rate_limited_and_counted(
    tmp_path: Path, warnings_log: list[str]
) -> None:
    clock, monotonic = SettableClock(), SettableClock(100.0)
    mark = TimestampMark(mark_path(tmp_path), clock, monotonic)
    for _ in range(3):  # three glitches within a minute: one warning
        mark.commit(NOW_MS + 10 * 86_400_000)
        assert mark.next_ms() == NOW_MS
    assert len(warnings_log) == 1
    monotonic.now += timestamps_module.WARNING_INTERVAL_S
    mark.commit(NOW_MS + 10 * 86_400_000)
    assert mark.next_ms() == NOW_MS
    assert len(warnings_log) == 2
    assert "(2 more discard(s) since the previous warning)" in warnings_log[1]


def test_credible_mark_is_the_mark_or_nothing() -> None:
    assert credible_mark(NOW_MS + 86_400_000, NOW_S) == NOW_MS + 86_400_000
    assert credible_mark(NOW_MS - 5, NOW_S) == NOW_MS - 5
    assert credible_mark(NOW_MS + 86_400_001, NOW_S) == 0


@given(
    now_s=st.floats(min_value=0, max_value=4_000_000_000, allow_nan=False),
    mark_ms=st.integers(min_value=0, max_value=10**16),
)
def test_a_stamp_after_a_credible_mark_is_near_the_clock(now_s: float, mark_ms: int) -> None:
    """Whatever the mark was, the next stamp is at most a day (and a millisecond) ahead."""
    stamp = next_stamp_ms(now_s, credible_mark(mark_ms, now_s))
    assert int(now_s * 1000) <= stamp <= int((now_s + MAX_MARK_AHEAD_S) * 1000) + 1


def test_advance_to_now_raises_the_mark_to_the_clock_and_saves_it(tmp_path: Path) -> None:
    clock = SettableClock()
    mark = TimestampMark(mark_path(tmp_path), clock)
    mark.advance_to_now()
    assert mark.last_ms == NOW_MS
    assert mark.path.read_bytes() == b"1700000000000\n"
    assert mark.next_ms() == NOW_MS + 1  # never older than that instant, not even equal
    clock.now = NOW_S - 60  # the clock steps back: the mark stays
    mark.advance_to_now()
    assert mark.last_ms == NOW_MS
    assert mark.next_ms() == NOW_MS + 1


def test_a_mark_that_cannot_be_saved_still_holds_in_memory(
    tmp_path: Path, warnings_log: list[str]
) -> None:
    (tmp_path / LINK_STATE_DIR_NAME).write_text("a file where the directory should be")
    mark = TimestampMark(mark_path(tmp_path), SettableClock())
    assert mark.last_ms == 0  # unreadable: ignored
    mark.commit(NOW_MS + 7)  # logged, not raised: the message matters more than the mark
    assert mark.last_ms == NOW_MS + 7
    assert mark.next_ms() == NOW_MS + 8
    assert any("Cannot save the telemetry timestamp mark" in line for line in warnings_log)


def test_a_failing_save_warns_once_and_says_when_it_works_again(
    tmp_path: Path, warnings_log: list[str]
) -> None:
    blocker = tmp_path / LINK_STATE_DIR_NAME
    blocker.write_text("a file where the directory should be")
    infos: list[str] = []
    sink = logger.add(lambda message: infos.append(message.record["message"]), level="INFO")
    try:
        mark = TimestampMark(mark_path(tmp_path), SettableClock())
        for i in range(5):
            mark.commit(NOW_MS + i)
        assert len([w for w in warnings_log if "Cannot save" in w]) == 1
        blocker.unlink()
        mark.commit(NOW_MS + 10)
        assert mark.path.read_bytes() == format_mark(NOW_MS + 10)
        assert any("is saved again" in line for line in infos), infos
    finally:
        logger.remove(sink)


def test_a_mark_path_that_is_a_directory_does_not_stop_stamping(
    tmp_path: Path, warnings_log: list[str]
) -> None:
    path = mark_path(tmp_path)
    (path / "inside").mkdir(parents=True)  # a directory (not empty) where the file should be
    clock = SettableClock()
    mark = TimestampMark(path, clock)
    assert mark.last_ms == 0
    assert any("Cannot read" in w for w in warnings_log), warnings_log
    mark.commit(mark.next_ms())  # logged, not raised
    assert mark.last_ms == NOW_MS
    assert mark.next_ms() == NOW_MS + 1
    mark.advance_to_now()
    assert path.is_dir()
