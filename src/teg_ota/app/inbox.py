"""Where attribute messages and RPC requests from the MQTT link go.

The link is built before anyone consumes its messages (the runner and ``teg_ota.compat``
attach a handler; a CLI command never does), so the container wires it to these inboxes.
Without a handler a message is dropped: nobody is there to act on it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")

Handler = Callable[[str, bytes], None]
RpcHandler = Callable[[int, bytes], None]
"""``(request_id, payload)`` of a server-side RPC request (app/rpc.py)."""


class _Inbox(Generic[K]):
    def __init__(self) -> None:
        self._handler: Callable[[K, bytes], None] | None = None
        self._lock = threading.Lock()

    def attach(self, handler: Callable[[K, bytes], None] | None) -> None:
        with self._lock:
            self._handler = handler

    def __call__(self, key: K, payload: bytes) -> None:
        with self._lock:
            handler = self._handler
        if handler is not None:
            handler(key, payload)


class AttributeInbox(_Inbox[str]):
    """``(topic, payload)`` of every attribute message."""


class RpcInbox(_Inbox[int]):
    """``(request_id, payload)`` of every RPC request with a valid id."""
