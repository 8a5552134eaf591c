"""What the simulating process lends its gateways: a clock, CPU slots and a runner thread.

A real gateway has its own CPU; the N simulated ones share one core. Without a limit, an
assignment to 10,000 of them makes 10,000 worker threads runnable at once, and the one
thread that runs every MQTT link gets a ten-thousandth of the interpreter: keep-alives go
unsent, the broker drops the sessions, and the run measures the simulator's collapse rather
than teg-ota. So:

* an update's work runs in one of :data:`CPU_SLOTS` slots (:class:`CpuSlots`), and a slot
  is given back while the update sleeps (its fetch retry's backoff, the health grace), so
  sleeping gateways never hold up the others: only the CPU work queues, as it would for a
  machine with that many cores;
* the runner's hand-over (runner.py: the link's thread parses, the runner's loop offers
  the request to the gateway) is one thread for the fleet (:class:`RunnerThread`), so the
  links' loop never waits for a worker thread to start.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

CPU_SLOTS = 4
"""At most this many updates do CPU work at once (the machine has 2 cores)."""

P = ParamSpec("P")
T = TypeVar("T")


class CpuSlots:
    def __init__(self, slots: int = CPU_SLOTS) -> None:
        self._slots = threading.BoundedSemaphore(slots)
        self._held = threading.local()

    def wrap(self, fn: Callable[P, T]) -> Callable[P, T]:
        """``fn`` run holding a slot (on whichever thread calls it)."""

        def slotted(*args: P.args, **kwargs: P.kwargs) -> T:
            self._slots.acquire()
            self._held.yes = True
            try:
                return fn(*args, **kwargs)
            finally:
                self._held.yes = False
                self._slots.release()

        return slotted

    def sleep(self, seconds: float) -> None:
        """Sleep; a slot the calling thread holds is lent to another meanwhile."""
        if not getattr(self._held, "yes", False):
            time.sleep(seconds)
            return
        self._slots.release()
        try:
            time.sleep(seconds)
        finally:
            self._slots.acquire()


class RealClock:
    """The Clock port on real time, sleeping through :class:`CpuSlots`, plus the no-op
    ``advance`` FakeRuntime calls."""

    def __init__(self, slots: CpuSlots) -> None:
        self._slots = slots

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        self._slots.sleep(seconds)

    def advance(self, seconds: float) -> None:
        """Real time advances by itself."""


class RunnerThread:
    """Runs the callbacks handed to it, in order, on one daemon thread."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], object] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="fleet-runner", daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], object]) -> None:
        self._jobs.put(job)

    def stop(self) -> None:
        self._jobs.put(None)
        self._thread.join(10)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except Exception as exc:  # noqa: BLE001 - one gateway's bug must not stop the rest
                print(f"fleet runner: {type(exc).__name__}: {exc}")
