"""The link's connect loop: connect, stay connected, reconnect on a jittered schedule.

Every connection attempt is this loop's own (gmqtt's reconnect is off: session.py). When
to try again is the pure schedule of :mod:`teg_ota.domain.core.jitter`, so that a fleet
that lost its broker at the same second does not come back in waves:

* the first contact after start-up (the provisioning request, or the first CONNECT) waits a
  random moment in ``[0, connect_window_s)``; so does the first reconnect after an
  established session (one that stayed up :data:`STABLE_SESSION_S`) is lost;
* a failed attempt is followed by full jitter, a delay uniform in ``[0, step]``, the step
  doubling from ``connect_backoff_initial_s`` up to ``connect_backoff_max_s``; a session
  lost sooner than :data:`STABLE_SESSION_S` counts as a failure (never sooner than the
  window would spread it), so a broker that accepts and drops at once is not hammered;
* refused credentials (CONNACK 4/5...) are retried every ``refused_retry_s``, unjittered;
* ``jitter=False``: the old schedule (at once, then the step shortened by up to 20 %).

The sleeping and the clock are injected (``sleep``, ``clock``) so a unit test runs the real
loop over a fake clock. On stop the outbox is flushed while connected, within the deadline
given to :meth:`ReconnectLoop.stop_at`, then DISCONNECT is sent.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable

from loguru import logger

from teg_ota.adapters.mqtt.outbox import DurableOutbox
from teg_ota.adapters.mqtt.provision import Provisioner
from teg_ota.adapters.mqtt.session import DISCONNECT_TIMEOUT_S, Connector, Session, until_stop
from teg_ota.adapters.mqtt.settings import MqttSettings
from teg_ota.domain.core.jitter import (
    STABLE_SESSION_S,
    RandomSource,
    Wait,
    after_error,
    after_failure,
    after_session,
    first_connect,
)

__all__ = ["STABLE_SESSION_S", "ReconnectLoop"]

FLUSH_POLL_S = 0.02


class ReconnectLoop:
    """Runs one link's connections on its loop; ``connected`` is the link's flag (cleared
    here whenever no session is up; the link sets it once a session's report is queued)."""

    def __init__(
        self,
        connector: Connector,
        outbox: DurableOutbox,
        connected: threading.Event,
        rng: RandomSource,
        *,
        provisioner: Provisioner | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connector = connector
        self._outbox = outbox
        self._connected = connected
        self._rng = rng
        self._provisioner = provisioner
        self._sleep = sleep
        self._clock = clock
        self._stop_deadline = 0.0

    def stop_at(self, deadline: float) -> None:
        """The monotonic time by which a stop must be done (flush included)."""
        self._stop_deadline = deadline

    async def run(self, settings: MqttSettings, stop: asyncio.Event) -> None:
        """Until ``stop`` is set."""
        policy = settings.reconnect_policy
        first = first_connect(policy, self._rng)
        if first.delay_s > 0:
            logger.info(
                "First contact with ThingsBoard in {:.1f}s (a random moment in the "
                "{:g}s connect window, so that a fleet does not start all at once)",
                first.delay_s,
                policy.window_s,
            )
            if not await self._wait(first.delay_s, stop):
                return
        if self._provisioner is not None:
            provisioned = await self._provisioner(settings, stop)
            if provisioned is None:
                return  # stopped while provisioning
            settings = provisioned
            self._connector.use_settings(provisioned)
        step, failures = first.step_s, 0
        while not stop.is_set():
            session = self._connector.new_session()
            wait: Wait | None = None
            try:
                outcome = await self._connector.connect(session, failures, stop)
                if outcome == "up":
                    failures = 0
                    started = self._clock()
                    await until_stop(session.lost.wait(), None, stop)
                    if stop.is_set():
                        await self._flush_and_disconnect(session)
                        return
                    self._connected.clear()
                    wait = after_session(policy, step, self._clock() - started, self._rng)
                    logger.warning(
                        "MQTT connection to {}:{} lost; reconnecting in {:.1f}s",
                        settings.host,
                        settings.port,
                        wait.delay_s,
                    )
                elif outcome == "refused":
                    wait = Wait(settings.refused_retry_s, step)
                else:
                    failures += 1
                    wait = after_failure(policy, step, self._rng)
            except Exception:  # noqa: BLE001 - a bug here must not end the link for good
                logger.exception("MQTT link: unexpected error; reconnecting")
            if wait is None:  # the unexpected error
                wait = after_error(policy, step, self._rng)
            step = wait.step_s
            self._connected.clear()
            await self._close(session)
            await self._wait(wait.delay_s, stop)

    async def _wait(self, delay_s: float, stop: asyncio.Event) -> bool:
        """Sleep ``delay_s`` unless stopped first; True when the time went by."""
        return await until_stop(self._sleep(delay_s), None, stop)

    async def _flush_and_disconnect(self, session: Session) -> None:
        margin = min(DISCONNECT_TIMEOUT_S, max(0.0, self._stop_deadline - time.monotonic()) / 4)
        while (
            len(self._outbox) > 0
            and session.live
            and time.monotonic() < self._stop_deadline - margin
        ):
            await asyncio.sleep(FLUSH_POLL_S)
        self._connected.clear()
        await self._close(session)

    async def _close(self, session: Session) -> None:
        if self._connector.is_current(session):
            self._connected.clear()
        await self._connector.close(session)
