"""Where a link's coroutine runs: an event loop in a daemon thread of its own, or a loop
that already runs in another thread.

A gateway has one link, and one thread for it keeps MQTT traffic away from the runner. The
fleet simulation runs thousands of links in one process: a thread each would cost a stack
and a loop apiece, so they share one loop (``start(main, loop)``). Either way the link's
code is the same; only this class knows which.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from loguru import logger

Main = Callable[[], Coroutine[Any, Any, None]]


class LoopHost:
    """Runs one coroutine (``main``) until it returns; thread-safe."""

    def __init__(self, thread_name: str) -> None:
        self._thread_name = thread_name
        self._thread: threading.Thread | None = None
        self._hosted: concurrent.futures.Future[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        """The loop ``main`` runs on; ``None`` before ``start`` and after ``forget``."""

    def start(self, main: Main, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """``main()`` on ``loop`` (running in another thread), else in a new daemon thread."""
        if loop is not None:
            self.loop = loop
            self._hosted = asyncio.run_coroutine_threadsafe(main(), loop)
            return
        own = asyncio.new_event_loop()
        self.loop = own
        self._thread = threading.Thread(
            target=self._thread_main, args=(own, main), name=self._thread_name, daemon=True
        )
        self._thread.start()

    def call_soon(self, callback: Callable[[], object]) -> None:
        """``callback()`` on the loop, from any thread; nothing when there is no loop."""
        loop = self.loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (a stop)
            loop.call_soon_threadsafe(callback)

    def join(self, grace: float) -> bool:
        """Wait up to ``grace`` seconds for ``main`` to end; True when it did. A hosted
        coroutine still running then is cancelled (a thread cannot be)."""
        if self._thread is not None:
            self._thread.join(grace)
            return not self._thread.is_alive()
        if self._hosted is None:
            return True
        done, _ = concurrent.futures.wait([self._hosted], timeout=grace)
        if not done:
            self._hosted.cancel()
        return bool(done)

    def forget(self) -> None:
        """After ``join``: ready for another ``start``."""
        self._thread = self._hosted = self.loop = None

    @staticmethod
    def _thread_main(loop: asyncio.AbstractEventLoop, main: Main) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(main())
        except BaseException:  # noqa: BLE001 - the thread must end cleanly whatever happens
            logger.exception("MQTT link loop crashed")
        finally:
            with contextlib.suppress(Exception):
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
