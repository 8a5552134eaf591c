"""One operation at a time per process, and "latest wins" for OTA requests: the only place
either rule exists.

Every controller operation (update, rollback, recovery, a watchdog restart) runs on one
thread, in order, so no two of them ever swap containers concurrently. Requests that are
*offered* rather than submitted (assignments from ThingsBoard) wait in a one-slot mailbox:
a newer offer replaces an older one that has not started, and the mailbox runs only after
everything submitted before it. The runner, the library facade, the CLI and the compat
names all go through one ``Exclusive`` (the container's singleton); the process lock
extends the rule to other processes.

The thread is a daemon, started on first use: on SIGTERM the runner may abandon a long
build safely (the journal says PREPARING, the old controller still runs).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, ParamSpec, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
P = ParamSpec("P")

_Job = tuple["Future[Any]", Callable[[], Any]]


class Exclusive:
    def __init__(self, name: str = "teg-ota-worker", *, offers_open: bool = True) -> None:
        self._name = name
        self._jobs: deque[_Job] = deque()
        self._offer: tuple[str, Callable[[], object]] | None = None
        self._offers_open = offers_open
        self._running = False
        self._closed = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ queries

    @property
    def busy(self) -> bool:
        """An operation runs, or one is waiting to."""
        with self._cond:
            return self._running or bool(self._jobs) or self._offer_ready()

    def on_own_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def wait_idle(self, timeout: float) -> bool:
        """True once nothing runs and nothing waits (within ``timeout`` seconds)."""
        with self._cond:
            return self._cond.wait_for(
                lambda: not (self._running or self._jobs or self._offer_ready()), timeout
            )

    # --------------------------------------------------------------- operations

    def submit(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("the worker is closed")
            self._jobs.append((future, lambda: fn(*args, **kwargs)))
            self._start()
            self._cond.notify_all()
        return future

    def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` exclusively and return its result (inline when already on the
        worker's thread: an operation may call another without deadlock)."""
        if self.on_own_thread():
            return fn(*args, **kwargs)
        return self.submit(fn, *args, **kwargs).result()

    def offer(self, what: str, fn: Callable[[], object]) -> None:
        """Run ``fn`` once everything submitted so far is done, unless a newer offer
        replaces it first (latest wins). ``what`` names it in the log."""
        with self._cond:
            if self._offer is not None:
                log.info("queued %s superseded by %s", self._offer[0], what)
            self._offer = (what, fn)
            self._start()
            self._cond.notify_all()

    def offer_waiting(self) -> str | None:
        """What the offer waiting to run is (``None``: none): a swap waiting for its
        controller's lock or window gives way to it (latest wins)."""
        with self._cond:
            return self._offer[0] if self._offer is not None else None

    def cancel_offer(self) -> bool:
        """Drop the offer that has not started yet; True when there was one."""
        with self._cond:
            cancelled, self._offer = self._offer is not None, None
            self._cond.notify_all()
            return cancelled

    def open_offers(self) -> None:
        """Offers wait until now (the runner's start-up must finish first)."""
        with self._cond:
            self._offers_open = True
            self._cond.notify_all()

    def close_offers(self) -> None:
        with self._cond:
            self._offers_open = False

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # ------------------------------------------------------------------ the thread

    def _offer_ready(self) -> bool:
        return self._offer is not None and self._offers_open

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
            self._thread.start()

    def _next(self) -> _Job | None:
        with self._cond:
            self._running = False
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._closed or self._jobs or self._offer_ready())
            if self._jobs:
                job = self._jobs.popleft()
            elif self._offer is not None and self._offers_open:
                _, fn = self._offer
                self._offer = None
                job = (Future(), fn)
            else:
                return None
            self._running = True
            return job

    def _serve(self) -> None:
        while (job := self._next()) is not None:
            future, fn = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on it
                future.set_exception(exc)
