"""When an assignment from ThingsBoard starts its update: at a random moment of a window.

Why: a profile-wide assignment reaches a whole fleet in the same second, and without this
every gateway would start fetching from the same Git remote in that second. Each waits a
delay uniform in ``[0, window)`` (``core.jitter.spread``) first, so the origin sees about
fleet size / window fetches a second instead of the whole fleet at once.

Only assignments wait: an operator's command, a rollback, a recovery and the start-up
launch never come here. The wait is "latest wins", like the queued update it precedes: a
newer assignment supersedes one still waiting (it waits its own delay), an unassignment
cancels it, and neither leaves anything behind: nothing was journalled or reported yet, so
ThingsBoard goes on showing what it showed before (its own QUEUED or INITIATED), and
DOWNLOADING comes when the fetch starts.

The wait sleeps on the clock port in short slices, so a superseded or cancelled wait ends
within one slice; the ``Gateway`` runs it off the update worker, which stays free for the
watchdog and the operator's commands meanwhile. In the app layer, not the domain's
services: it is waited on and cancelled from several threads, so it holds a lock.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass

from teg_ota.domain.core.jitter import RandomSource, spread
from teg_ota.ports.clock import Clock

log = logging.getLogger(__name__)

SLICE_S = 0.5
"""The longest single sleep of a wait: how late a superseded wait notices."""
SUPERSEDED = "replaced by a newer assignment before it started"


@dataclass(frozen=True, slots=True)
class Ticket:
    """One assignment's turn: its number (the latest wins) and its drawn delay."""

    number: int
    delay_s: float


class StartSpread:
    def __init__(self, clock: Clock, window_s: float, rng: RandomSource | None = None) -> None:
        if not window_s >= 0:  # also refuses NaN
            raise ValueError(f"update start window {window_s} is negative")
        self._clock = clock
        self._window_s = window_s
        self._rng: RandomSource = rng if rng is not None else random.Random()  # noqa: S311
        self._cond = threading.Condition()
        self._latest = 0
        self._why_not: dict[int, str] = {}
        """Why a ticket that is no longer the latest gives way (superseded or cancelled)."""
        self._waiting = 0

    @property
    def window_s(self) -> float:
        return self._window_s

    def begin(self) -> Ticket:
        """A new assignment arrived: it supersedes any still waiting; its ticket."""
        with self._cond:
            if self._waiting and self._latest not in self._why_not:
                log.info("an assignment waiting to start was replaced by a newer one")
            if self._latest:
                self._why_not.setdefault(self._latest, SUPERSEDED)
            self._latest += 1
            self._waiting += 1
            return Ticket(self._latest, spread(self._window_s, self._rng))

    def cancel(self, reason: str) -> bool:
        """No assignment waiting is to start (its package was unassigned): True when one
        was waiting."""
        with self._cond:
            waiting = self._waiting > 0 and self._latest not in self._why_not
            self._why_not.setdefault(self._latest, reason)
            self._cond.notify_all()
            return waiting

    def wait(self, ticket: Ticket, then: Callable[[], object] = lambda: None) -> str | None:
        """Sleep out ``ticket``'s delay; ``None`` when it is still the latest, after
        ``then`` ran (under the lock: no newer ticket can begin between the check and
        ``then``), else why it gives way."""
        try:
            deadline = self._clock.monotonic() + ticket.delay_s
            if ticket.delay_s > 0:
                log.info(
                    "the update starts in %.1f s (spread over %g s)",
                    ticket.delay_s,
                    self._window_s,
                )
            while True:
                with self._cond:
                    why_not = self._why_not.get(ticket.number)
                    if why_not is not None:
                        return why_not
                    left = deadline - self._clock.monotonic()
                    if left <= 0:
                        then()
                        return None
                self._clock.sleep(min(left, SLICE_S))
        finally:
            with self._cond:
                self._waiting -= 1
                if self._waiting == 0:
                    self._why_not.clear()  # every ticket has had its answer
                self._cond.notify_all()

    def wait_settled(self, timeout: float) -> bool:
        """True once no assignment waits for its start (within ``timeout`` real seconds)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._waiting == 0, timeout)
