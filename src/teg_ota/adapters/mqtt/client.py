"""The gmqtt client as the link needs it: no reconnect, no replay, quiet about refusals.

gmqtt's defaults suit an application that hands it messages and forgets them; the link
keeps its messages in the outbox and owns every reconnect, so each default that would act
behind its back is switched off here, in one place.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import gmqtt
from gmqtt.storage import PersistentStorage


class _DemoteRefusalLogs(logging.Filter):
    """gmqtt logs each permanent refusal twice at ERROR; the link logs its own single line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and "permanent" in str(record.msg):
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


_GMQTT_LOGGER = logging.getLogger("gmqtt.teg_ota_link")
_GMQTT_LOGGER.addFilter(_DemoteRefusalLogs())


class AckTracker(PersistentStorage):  # type: ignore[misc]
    """gmqtt's in-flight store, used only to learn packet ids and PUBACKs.

    It keeps nothing: the outbox is the store, and the link re-sends from it itself, so
    gmqtt must never replay anything on its own (it would duplicate messages).
    """

    def __init__(self, on_ack: Callable[[int], None]) -> None:
        super().__init__()
        self._on_ack = on_ack
        self.last_mid: int | None = None

    def push_message(self, mid: int, raw_package: bytes) -> None:
        self.last_mid = mid

    def remove_message_by_mid(self, mid: int) -> None:
        self._on_ack(mid)


class _Client(gmqtt.Client):  # type: ignore[misc]
    async def reconnect(self, delay: bool = False) -> None:
        """Disabled: the link replaces the whole client itself, with backoff."""
        return


def new_client(
    client_id: str, tracker: AckTracker, logger: logging.Logger = _GMQTT_LOGGER
) -> gmqtt.Client:
    """A client for ONE connection: clean session, PUBACKs only once ``on_message`` returned.
    ``logger``: gmqtt's (provision.py gives one that never logs payloads)."""
    return _Client(
        client_id,
        clean_session=True,
        optimistic_acknowledgement=False,
        persistent_storage=tracker,
        logger=logger,
    )
