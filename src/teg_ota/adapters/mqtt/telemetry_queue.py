"""The producer end of the outbox: every telemetry message stamped, then queued.

Queued durably while the disk allows it; when it does not, the outbox keeps the message in
memory and the mark stays in memory too (outbox.py, timestamps.py): nothing here fails a
message because of the disk, only a value that cannot be sent (:class:`TelemetryError`).

Stamping and queueing happen under one lock, so the outbox order is the ``ts`` order even
with several threads publishing: the sender delivers in outbox order, so ThingsBoard
receives the messages with increasing ``ts``, each one newer than the one before.

Which of them keep their ``ts`` on the wire is decided when they are sent
(:meth:`TelemetryQueue.wire_payload`, rule in timestamps.py): a message queued while
connected and sent within a few seconds goes out flat, for ThingsBoard to stamp. Only this
process knows that a message was queued while connected (an in-memory note, no change to
the outbox's files): whatever an earlier run queued keeps its ``ts``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping

from loguru import logger

from teg_ota.adapters.mqtt.outbox import DurableOutbox, OutboxEntry
from teg_ota.adapters.mqtt.payloads import (
    TELEMETRY_TOPIC,
    flat_payload,
    payload_ts_ms,
    restamped,
    software_report,
    telemetry_payload,
)
from teg_ota.adapters.mqtt.timestamps import (
    LIVE_WINDOW_S,
    TimestampMark,
    is_live,
    mark_is_credible,
    mark_path,
)
from teg_ota.ports.telemetry_sink import TelemetryError


class TelemetryQueue:
    """Stamps messages (:class:`TimestampMark`) and appends them to ``outbox``; any thread.

    ``clock`` gives the Unix time in seconds; the mark lives next to the outbox's entries.
    ``monotonic`` measures how long a message queued while connected waited to be sent.
    """

    def __init__(
        self,
        outbox: DurableOutbox,
        clock: Callable[[], float],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._outbox = outbox
        self._flat_through: int | None = None
        """Entries up to this sequence go out flat (a far-ahead stamp was found)."""
        self._stamps = TimestampMark(mark_path(outbox.directory), clock)
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._software_report_seq: int | None = None
        self._live_lock = threading.Lock()
        self._queued_live: dict[int, float] = {}
        """Outbox sequence -> monotonic instant, for messages queued while connected and
        not older than :data:`LIVE_WINDOW_S` (older ones are forgotten: never live again)."""

    def enqueue(self, values: Mapping[str, object], *, ota_state: bool, connected: bool) -> int:
        """Stamp and queue one message; its outbox sequence. Raises :class:`TelemetryError`.

        ``connected``: the link was connected when the message was queued (it may go out
        flat)."""
        with self._lock:
            return self._enqueue_locked(values, ota_state=ota_state, connected=connected)

    def queue_software_report(
        self, current_software: Callable[[], tuple[str | None, str | None]]
    ) -> int | None:
        """Queue ``current_sw_*`` as telemetry (stamped like every message, in the outbox);
        returns its outbox sequence number, ``None`` if nothing was queued. Never raises.

        Called when a connection is up: the report is a live message. ``current_software()``
        is asked under the lock: a report queued by another thread meanwhile (UPDATED naming
        a new version) then comes after this one, never before it with the older truth
        winning in ThingsBoard.
        """
        try:
            with self._lock:
                title, version = current_software()
                values = software_report(title, version)
                if not values:
                    return None
                seq = self._enqueue_locked(values, ota_state=False, connected=True)
                superseded, self._software_report_seq = self._software_report_seq, seq
            if superseded is not None:
                # The previous connection's report, if it is still queued: never delivered
                # (or at most in flight), and this one says the same, later. (remove()
                # raises only when the directory cannot be synced: the entry is gone.)
                with contextlib.suppress(OSError):
                    self._outbox.remove(superseded)
        except TelemetryError as exc:
            logger.error("current_sw_* not reported: {}", exc)
            return None
        except Exception:  # noqa: BLE001 - a reporting problem must not break the session
            logger.exception("current_software() failed; current_sw_* not reported")
            return None
        return seq

    def note_assignment(self) -> None:
        """An attribute message (an OTA assignment) arrived now: every ``ts`` stamped from
        now on is after this instant, also after a restart (the mark is written)."""
        with self._lock:
            self._stamps.advance_to_now()

    def wire_payload(self, entry: OutboxEntry) -> bytes:
        """What to publish for ``entry`` now: flat when it is live or an OTA state, else as
        it was queued.

        OTA states always go out flat, also when queued offline: ThingsBoard stamps its own
        QUEUED/INITIATED with server time, and a device timestamp (a clock an hour behind,
        a report that waited behind a backlog) would lose to them and leave the dashboard in
        Updating. They are delivered in order, after the assignment they answer, so server
        stamps on arrival keep their order; other telemetry keeps the device's time."""
        with self._live_lock:
            queued_at = self._queued_live.get(entry.seq)
        if self._far_ahead(entry):
            return self._stamped_on_arrival(entry)
        if not entry.ota_state and not is_live(queued_at, self._monotonic()):
            return entry.payload
        flat = flat_payload(entry.payload)
        return entry.payload if flat is None else flat

    def _far_ahead(self, entry: OutboxEntry) -> bool:
        """Whether ``entry`` must lose its ``ts``: it, or an entry queued after it, was
        stamped by a clock far ahead (an earlier run's, or this one's before it was set).
        Such a ts stays ThingsBoard's latest value for years and hides every later report;
        and what was queued after it must not arrive older than it, so the whole backlog
        up to the newest entry then goes out stamped on arrival, in order."""
        if self._flat_through is not None and entry.seq <= self._flat_through:
            return True
        ts_ms = payload_ts_ms(entry.payload)
        if ts_ms is None:
            return False
        now_s = self._stamps.clock_s
        if now_s is None:  # nothing stamped yet by this process
            now_s = self._stamps.read_clock()
        if mark_is_credible(ts_ms, now_s):
            return False
        newest = max((queued.seq for queued in self._outbox.entries()), default=entry.seq)
        self._flat_through = max(newest, entry.seq)
        logger.warning(
            "outbox entry {} is stamped {:.0f} days ahead of the clock: it and the {} "
            "message(s) queued after it go out stamped on arrival instead",
            entry.seq,
            (ts_ms / 1000 - now_s) / 86400,
            self._flat_through - entry.seq,
        )
        return True

    def _stamped_on_arrival(self, entry: OutboxEntry) -> bytes:
        flat = flat_payload(entry.payload)
        if flat is not None:
            return flat
        return restamped(entry.payload, int((self._stamps.clock_s or 0.0) * 1000))

    def _enqueue_locked(
        self, values: Mapping[str, object], *, ota_state: bool, connected: bool
    ) -> int:
        ts_ms = self._stamps.next_ms()
        payload = telemetry_payload(ts_ms, values)
        self._stamps.commit(ts_ms)  # durable (when it can be) before a message carries it
        # Never raises for the disk: an entry that cannot be written is kept in memory.
        seq = self._outbox.append(TELEMETRY_TOPIC, payload, ota_state=ota_state)
        now = self._monotonic()
        with self._live_lock:
            for old in [s for s, at in self._queued_live.items() if now - at > LIVE_WINDOW_S]:
                del self._queued_live[old]
            if connected:
                self._queued_live[seq] = now
        return seq
