"""The producer end of the outbox: every telemetry message stamped, then queued durably.

Stamping and queueing happen under one lock, so the outbox order is the ``ts`` order even
with several threads publishing: the sender delivers in outbox order, so ThingsBoard
receives the messages with increasing ``ts``, each one newer than the one before.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping

from loguru import logger

from teg_ota.adapters.mqtt.outbox import DurableOutbox
from teg_ota.adapters.mqtt.payloads import TELEMETRY_TOPIC, software_report, telemetry_payload
from teg_ota.adapters.mqtt.timestamps import TimestampMark, mark_path
from teg_ota.ports.telemetry_sink import TelemetryError


class TelemetryQueue:
    """Stamps messages (:class:`TimestampMark`) and appends them to ``outbox``; any thread.

    ``clock`` gives the Unix time in seconds; the mark lives next to the outbox's entries.
    """

    def __init__(self, outbox: DurableOutbox, clock: Callable[[], float]) -> None:
        self._outbox = outbox
        self._stamps = TimestampMark(mark_path(outbox.directory), clock)
        self._lock = threading.Lock()
        self._software_report_seq: int | None = None

    def enqueue(self, values: Mapping[str, object], *, ota_state: bool) -> int:
        """Stamp and queue one message; its outbox sequence. Raises :class:`TelemetryError`."""
        with self._lock:
            return self._enqueue_locked(values, ota_state=ota_state)

    def queue_software_report(
        self, current_software: Callable[[], tuple[str | None, str | None]]
    ) -> int | None:
        """Queue ``current_sw_*`` as telemetry (stamped like every message, in the outbox);
        returns its outbox sequence number, ``None`` if nothing was queued. Never raises.

        ``current_software()`` is asked under the lock: a report queued by another thread
        meanwhile (UPDATED naming a new version) then gets a later ``ts`` than this one,
        never an earlier one with the older truth winning in ThingsBoard.
        """
        try:
            with self._lock:
                title, version = current_software()
                values = software_report(title, version)
                if not values:
                    return None
                seq = self._enqueue_locked(values, ota_state=False)
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

    def _enqueue_locked(self, values: Mapping[str, object], *, ota_state: bool) -> int:
        ts_ms = self._stamps.next_ms()
        payload = telemetry_payload(ts_ms, values)
        self._stamps.commit(ts_ms)  # durable before any message carries this ts
        try:
            return self._outbox.append(TELEMETRY_TOPIC, payload, ota_state=ota_state)
        except OSError as exc:
            raise TelemetryError(
                f"cannot queue telemetry in {self._outbox.directory}: {exc}"
            ) from exc
