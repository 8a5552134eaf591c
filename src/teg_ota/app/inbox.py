"""Where attribute messages from the MQTT link go.

The link is built before anyone consumes its messages (the runner and ``teg_ota.compat``
attach a handler; a CLI command never does), so the container wires it to this inbox.
Without a handler a message is dropped: nobody is there to act on it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

Handler = Callable[[str, bytes], None]


class AttributeInbox:
    def __init__(self) -> None:
        self._handler: Handler | None = None
        self._lock = threading.Lock()

    def attach(self, handler: Handler | None) -> None:
        with self._lock:
            self._handler = handler

    def __call__(self, topic: str, payload: bytes) -> None:
        with self._lock:
            handler = self._handler
        if handler is not None:
            handler(topic, payload)
