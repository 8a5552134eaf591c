"""What the link sends for each queued message (teg_ota.adapters.mqtt.telemetry_queue),
without a broker: flat when queued while connected and sent soon, stamped otherwise, and
never stamped before the latest attribute message. Files on tmp_path, clocks the test's.
"""

from __future__ import annotations

import json
from pathlib import Path

from teg_ota.adapters.mqtt.outbox import DurableOutbox
from teg_ota.adapters.mqtt.telemetry_queue import TelemetryQueue
from teg_ota.adapters.mqtt.timestamps import LIVE_WINDOW_S, format_mark, mark_path

NOW_S = 1_700_000_000.0
NOW_MS = 1_700_000_000_000


class Clock:
    """Seconds as set by the test (wall clock or monotonic)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_queue(tmp_path: Path) -> tuple[TelemetryQueue, DurableOutbox, Clock, Clock]:
    outbox = DurableOutbox(tmp_path / "outbox")
    wall, monotonic = Clock(NOW_S), Clock(1000.0)
    return TelemetryQueue(outbox, wall, monotonic), outbox, wall, monotonic


def sent(queue: TelemetryQueue, outbox: DurableOutbox) -> list[object]:
    """What the sender would publish for every pending entry now, decoded."""
    return [json.loads(queue.wire_payload(entry)) for entry in outbox.entries()]


def test_queued_while_connected_and_sent_at_once_goes_out_flat(tmp_path: Path) -> None:
    queue, outbox, _, _ = make_queue(tmp_path)
    queue.enqueue({"sw_state": "DOWNLOADING"}, ota_state=True, connected=True)
    assert sent(queue, outbox) == [{"sw_state": "DOWNLOADING"}]
    # The outbox keeps the stamped form: if it waits too long, the ts is still there.
    entry = outbox.peek()
    assert entry is not None
    assert json.loads(entry.payload) == {"ts": NOW_MS, "values": {"sw_state": "DOWNLOADING"}}


def test_queued_while_offline_keeps_its_ts(tmp_path: Path) -> None:
    queue, outbox, _, _ = make_queue(tmp_path)
    queue.enqueue({"controller_restarts": 2}, ota_state=False, connected=False)
    assert sent(queue, outbox) == [{"ts": NOW_MS, "values": {"controller_restarts": 2}}]


def test_an_ota_state_goes_out_flat_even_when_queued_offline_or_by_an_earlier_run(
    tmp_path: Path,
) -> None:
    """The server stamps QUEUED/INITIATED with its own clock: a device ts (wrong clock, a
    wait behind a backlog) would lose to them and leave the dashboard in Updating."""
    queue, outbox, _, monotonic = make_queue(tmp_path)
    queue.enqueue({"sw_state": "FAILED", "sw_error": "x"}, ota_state=True, connected=False)
    monotonic.now += 3600
    assert sent(queue, outbox) == [{"sw_state": "FAILED", "sw_error": "x"}]
    after_restart, _, _, _ = make_queue(tmp_path)
    assert sent(after_restart, outbox) == [{"sw_state": "FAILED", "sw_error": "x"}]


def test_a_live_message_that_waited_too_long_keeps_its_ts(tmp_path: Path) -> None:
    queue, outbox, _, monotonic = make_queue(tmp_path)
    queue.enqueue({"n": 1}, ota_state=False, connected=True)
    monotonic.now += LIVE_WINDOW_S
    assert sent(queue, outbox) == [{"n": 1}]
    monotonic.now += 0.001  # the connection dropped before it went out, say
    assert sent(queue, outbox) == [{"ts": NOW_MS, "values": {"n": 1}}]


def test_what_an_earlier_run_queued_keeps_its_ts(tmp_path: Path) -> None:
    queue, _, _, _ = make_queue(tmp_path)
    queue.enqueue({"n": 1}, ota_state=False, connected=True)
    after_restart, _, _, _ = make_queue(tmp_path)  # same outbox directory, new process
    assert sent(after_restart, DurableOutbox(tmp_path / "outbox")) == [
        {"ts": NOW_MS, "values": {"n": 1}}
    ]


def test_entries_not_written_by_the_queue_are_sent_as_they_are(tmp_path: Path) -> None:
    """An old-version entry, or a raw one: only the queue's own live entries are flattened."""
    queue, outbox, _, _ = make_queue(tmp_path)
    outbox.append("v1/devices/me/telemetry", b'{"ts":5,"values":{"old":1}}')
    outbox.append("v1/devices/me/telemetry", b'{"already":"flat"}')
    assert [queue.wire_payload(e) for e in outbox.entries()] == [
        b'{"ts":5,"values":{"old":1}}',
        b'{"already":"flat"}',
    ]


def test_the_software_report_of_a_connect_is_live(tmp_path: Path) -> None:
    queue, outbox, _, _ = make_queue(tmp_path)
    seq = queue.queue_software_report(lambda: ("teg-controller", "v1.0"))
    assert seq is not None
    assert sent(queue, outbox) == [
        {"current_sw_title": "teg-controller", "current_sw_version": "v1.0"}
    ]


def test_mixed_order_is_kept_and_stamps_still_increase(tmp_path: Path) -> None:
    queue, outbox, _, _ = make_queue(tmp_path)
    queue.enqueue({"n": 0}, ota_state=False, connected=False)
    queue.enqueue({"n": 1}, ota_state=False, connected=True)
    queue.enqueue({"n": 2}, ota_state=False, connected=False)
    assert sent(queue, outbox) == [
        {"ts": NOW_MS, "values": {"n": 0}},
        {"n": 1},
        {"ts": NOW_MS + 2, "values": {"n": 2}},
    ]


def test_an_offline_report_is_never_stamped_before_the_latest_assignment(
    tmp_path: Path,
) -> None:
    """The assignment arrives, then the clock steps back (a power cut, NTP): what is queued
    offline afterwards is still stamped after the instant the assignment arrived."""
    queue, outbox, wall, _ = make_queue(tmp_path)
    queue.enqueue({"n": 0}, ota_state=False, connected=False)
    wall.now = NOW_S + 3600
    queue.note_assignment()  # an OTA assignment (attribute message) arrives now
    assert mark_path(outbox.directory).read_bytes() == format_mark(NOW_MS + 3_600_000)
    wall.now = NOW_S + 10  # the clock steps back by almost an hour
    queue.enqueue({"n": 1}, ota_state=False, connected=False)
    assert sent(queue, outbox)[-1] == {"ts": NOW_MS + 3_600_001, "values": {"n": 1}}


def test_the_assignment_instant_survives_a_restart(tmp_path: Path) -> None:
    queue, outbox, wall, _ = make_queue(tmp_path)
    wall.now = NOW_S + 600
    queue.note_assignment()
    # Power cut before anything was reported; the clock restarts ten minutes behind.
    after, outbox, _, _ = make_queue(tmp_path)
    after.enqueue({"n": 1}, ota_state=False, connected=False)
    assert sent(after, outbox) == [{"ts": NOW_MS + 600_001, "values": {"n": 1}}]


def test_a_clock_ahead_of_the_assignment_instant_decides(tmp_path: Path) -> None:
    queue, outbox, wall, _ = make_queue(tmp_path)
    queue.note_assignment()
    wall.now = NOW_S + 30
    queue.enqueue({"n": 1}, ota_state=False, connected=False)
    assert sent(queue, outbox) == [{"ts": NOW_MS + 30_000, "values": {"n": 1}}]


def test_the_live_notes_do_not_pile_up(tmp_path: Path) -> None:
    queue, _, _, monotonic = make_queue(tmp_path)
    for i in range(50):
        queue.enqueue({"n": i}, ota_state=False, connected=True)
        monotonic.now += LIVE_WINDOW_S  # each one is past the window when the next comes
    assert len(queue._queued_live) <= 2


def test_an_outbox_that_cannot_persist_still_queues_stamped_messages(tmp_path: Path) -> None:
    """A file where the outbox directory should be: no disk for the entries nor the mark,
    and still no error for the publisher; stamps follow the rules in memory."""
    (tmp_path / "outbox").write_text("in the way")
    queue, outbox, wall, _ = make_queue(tmp_path)
    assert outbox.degraded is not None
    queue.enqueue({"n": 0}, ota_state=False, connected=False)
    queue.enqueue({"sw_state": "FAILED"}, ota_state=True, connected=False)
    wall.now = NOW_S - 60  # the clock steps back: the mark in memory still holds
    queue.enqueue({"n": 1}, ota_state=False, connected=False)
    assert queue.queue_software_report(lambda: ("teg-controller", "v2")) is not None
    assert sent(queue, outbox) == [
        {"ts": NOW_MS, "values": {"n": 0}},
        {"sw_state": "FAILED"},
        {"ts": NOW_MS + 2, "values": {"n": 1}},
        {"current_sw_title": "teg-controller", "current_sw_version": "v2"},
    ]
    assert outbox.in_memory == 4
    assert (tmp_path / "outbox").read_text() == "in the way"


def test_an_entry_stamped_far_ahead_goes_out_stamped_on_arrival(tmp_path: Path) -> None:
    """Queued by a run whose clock read 80 years ahead: its ts would stay ThingsBoard's
    latest value until 2106, so it goes out flat, and so does what was queued after it
    (arriving older than it, it would lose to it); a later backlog keeps its ts."""
    queue, outbox, wall, _ = make_queue(tmp_path)
    wall.now = NOW_S + 80 * 365 * 86400
    queue.enqueue({"controller_restarts": 1}, ota_state=False, connected=False)
    wall.now = NOW_S + 3600
    queue.enqueue({"controller_restarts": 2}, ota_state=False, connected=False)
    assert sent(queue, outbox) == [{"controller_restarts": 1}, {"controller_restarts": 2}]
    for entry in outbox.entries():
        outbox.remove(entry.seq)
    queue.enqueue({"controller_restarts": 3}, ota_state=False, connected=False)
    assert sent(queue, outbox) == [{"ts": NOW_MS + 3_600_001, "values": {"controller_restarts": 3}}]


def test_a_far_ahead_entry_whose_values_hold_ts_is_restamped_now(tmp_path: Path) -> None:
    """A flat form is impossible (ThingsBoard would read the values' ts as the stamp)."""
    queue, outbox, _, _ = make_queue(tmp_path)
    far_ms = NOW_MS + 80 * 365 * 86400 * 1000
    outbox.append(
        "v1/devices/me/telemetry", json.dumps({"ts": far_ms, "values": {"ts": 1}}).encode()
    )
    assert sent(queue, outbox) == [{"ts": NOW_MS, "values": {"ts": 1}}]
