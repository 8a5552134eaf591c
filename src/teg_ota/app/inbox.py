"""Where attribute messages from the MQTT link go.

The link is built before anyone consumes its messages (the runner attaches later, an
embedding product may never), so the container wires it to this inbox; without a handler
the message is handed to the gateway synchronously, which is the seed's behaviour.
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
