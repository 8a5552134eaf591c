"""One thread that performs every controller operation (update, restart, rollback) in turn.

Operations block (docker build, health grace) so they run off the event loop; one at a
time so no two of them ever swap containers concurrently. The thread is a daemon: on
SIGTERM the runner may abandon a long build safely (the journal says PREPARING and the old
controller still runs), and the process must not wait for it.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, ParamSpec, TypeVar

T = TypeVar("T")
P = ParamSpec("P")

_STOP = object()


class SerialWorker:
    def __init__(self, name: str = "teg-ota-worker") -> None:
        self._queue: queue.Queue[Any] = queue.Queue()
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> asyncio.Future[T]:
        future: Future[T] = Future()
        self._idle.clear()
        self._queue.put((future, fn, args, kwargs))
        return asyncio.wrap_future(future)

    def wait_idle(self, timeout: float) -> bool:
        """True when no operation is running or queued (within ``timeout``)."""
        return self._idle.wait(timeout)

    def close(self) -> None:
        self._queue.put(_STOP)

    def _serve(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            future, fn, args, kwargs = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
                    future.set_exception(exc)
            if self._queue.empty():
                self._idle.set()
