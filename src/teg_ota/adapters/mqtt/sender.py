"""The consumer end of the outbox: deliver the head, wait for its PUBACK, delete it, repeat.

One message in flight at a time: strict order and at-least-once (at most the message in
flight is duplicated after a crash or a lost connection), at the price of one broker round
trip per message. What goes on the wire for an entry (flat or with its ``ts``) is asked
for each attempt (``prepare``). An entry that can never be sent (larger than ThingsBoard's
limit: :func:`~teg_ota.adapters.mqtt.payloads.fits_in_one_message`) is dropped with an
error and counted, instead of holding up everything behind it: ThingsBoard would close the
session on it, on every attempt, for ever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from loguru import logger

from teg_ota.adapters.mqtt.outbox import DurableOutbox, OutboxEntry
from teg_ota.adapters.mqtt.payloads import (
    MAX_REMAINING_LENGTH,
    fits_in_one_message,
    remaining_length,
)
from teg_ota.adapters.mqtt.session import ACK_TIMEOUT_S, Connector


class OutboxSender:
    """Delivers ``outbox`` over the connector's live session; runs on the link's loop.

    ``request_attributes()`` is called once a connect's ``current_sw_*`` report is out (see
    :attr:`Session.request_after`): the OTA attribute request follows the report.
    ``prepare(entry)`` gives the payload to publish for an entry (default: as queued).
    """

    def __init__(
        self,
        outbox: DurableOutbox,
        connector: Connector,
        request_attributes: Callable[[], None],
        prepare: Callable[[OutboxEntry], bytes] | None = None,
    ) -> None:
        self._outbox = outbox
        self._connector = connector
        self._request_attributes = request_attributes
        self._prepare = prepare or (lambda entry: entry.payload)
        self.dropped = 0
        """Entries dropped because they can never be sent (too large), since creation."""

    async def run(self, wakeup: asyncio.Event) -> None:
        """Until cancelled; ``wakeup`` is set whenever there may be something to do."""
        unacked_seq, timeouts = None, 0
        while True:
            wakeup.clear()
            try:
                session = self._connector.live_session()
                entry = self._outbox.peek() if session is not None else None
                if (
                    session is not None
                    and session.request_after is not None
                    and (entry is None or entry.seq > session.request_after)
                ):
                    # The connect's current_sw_* report is out (or was dropped by the bound).
                    session.request_after = None
                    self._request_attributes()
                if session is None or entry is None:
                    await wakeup.wait()
                    continue
                payload = self._prepare(entry)
                if not fits_in_one_message(entry.topic, payload):
                    self._drop(entry, payload)
                    continue
                acked = await session.deliver(entry.topic, payload)
                if acked:
                    unacked_seq, timeouts = None, 0
                    self._outbox.remove(entry.seq)
                elif session.live:
                    timeouts = timeouts + 1 if unacked_seq == entry.seq else 1
                    unacked_seq = entry.seq
                    logger.warning(
                        "No PUBACK for outbox message {} within {:.0f}s (attempt {}); resending",
                        entry.seq,
                        ACK_TIMEOUT_S,
                        timeouts,
                    )
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the sender must survive (disk errors...)
                logger.exception("MQTT link sender error; retrying in 1s")
                await asyncio.sleep(1.0)

    def _drop(self, entry: OutboxEntry, payload: bytes) -> None:
        self._outbox.remove(entry.seq)
        self.dropped += 1
        logger.error(
            "Outbox message {}{} on {} can never be sent: {} bytes with topic and header, "
            "ThingsBoard accepts at most {}; dropped ({} dropped since start)",
            entry.seq,
            " (an OTA state)" if entry.ota_state else "",
            entry.topic,
            remaining_length(entry.topic, payload),
            MAX_REMAINING_LENGTH,
            self.dropped,
        )
