"""``teg-ota run``: the gateway's long-running process (the Raspberry Pi entrypoint).

Three sources of work feed one serial worker:

* OTA requests from the MQTT link, coalesced in a one-slot mailbox (latest wins);
* controller exits from the runtime's event stream (noticed within a second), plus a
  periodic check as a safety net, both driving the watchdog;
* start-up: recover the journal, make sure a controller runs;
* server-side RPC requests (app/rpc.py): restart, rollback and update are queued on the
  worker behind what runs; ``ota_status`` runs on a thread of the loop's executor.

Besides, ``ms_since_controller_startup`` goes out every ``uptime_telemetry_s`` while a
controller runs and the link is connected (app/uptime.py).

SIGTERM/SIGINT: stop taking work, give the current step a few seconds, flush the outbox,
disconnect, exit 0. The controller keeps running; an abandoned step is finished or undone
by the journal at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Mapping
from typing import Protocol, TypeVar, runtime_checkable

from loguru import logger

from teg_ota.app.container import Container
from teg_ota.app.exclusive import Exclusive
from teg_ota.app.gateway import Gateway
from teg_ota.app.rpc import Job, RpcDispatcher, RpcReplies
from teg_ota.app.settings import Settings
from teg_ota.app.uptime import uptime_telemetry
from teg_ota.domain.core.ota_messages import OtaDeleted, OtaRequest, parse_ota_message
from teg_ota.domain.model.journal import JournalPhase
from teg_ota.ports.container_runtime import ContainerRuntime, ContainerRuntimeError
from teg_ota.ports.telemetry_sink import TelemetryError, TelemetrySink

T = TypeVar("T")

SHUTDOWN_GRACE_S = 5.0
FLUSH_TIMEOUT_S = 3.0
_WATCHER_REARM_S = 5.0
_EXIT_WATCH_WINDOW_S = 60.0
"""How long one subscription to the engine's exit events lasts. Only a bound on a stream
that might hang unnoticed: the events arrive as they happen whatever the window, and the
watchdog's own check (``watchdog_interval_s``) is the safety net. Each new window costs a
subscription and three inspections, so a short one (it was 5 s) is polling by another name:
about 50 engine requests a minute at idle (benchmarks/idle_cost.py)."""


@runtime_checkable
class _Link(Protocol):
    def start(self) -> None: ...

    def stop(self, timeout: float = ...) -> None: ...


@runtime_checkable
class _Online(Protocol):
    @property
    def connected(self) -> bool: ...


@runtime_checkable
class _RpcLink(RpcReplies, Protocol): ...


@runtime_checkable
class _LiveTelemetry(Protocol):
    def publish_live_telemetry(self, values: Mapping[str, object]) -> None: ...


class Runner:
    def __init__(self, container: Container, settings: Settings) -> None:
        self._container = container
        self._settings = settings
        self._gateway: Gateway = container.gateway()
        self._runtime: ContainerRuntime = container.runtime()
        # The process's one Exclusive: assignments wait in its mailbox until start-up is done.
        self._exclusive: Exclusive = self._gateway.exclusive
        self._exclusive.close_offers()
        self._gateway.service.set_swap_interrupt(self._newer_offer)
        self._controller_exited = asyncio.Event()
        self._stopping = threading.Event()
        self._rearm = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def run(self, stop: asyncio.Event) -> int:
        self._loop = asyncio.get_running_loop()
        logger.info("teg-ota runner starting (data in {})", self._settings.data_path)
        if self._settings.original_names:
            logger.info(
                "read the original gateway's variables: {} (teg-ota's names win when both "
                "are set; docs/migration.md)",
                ", ".join(self._settings.original_names),
            )
        link = self._container.telemetry()
        tasks: list[asyncio.Task[None]] = []
        # Start-up may build the first controller (minutes): a stop request must not wait
        # for it. The worker thread goes on with the step; the journal covers the rest.
        starting = asyncio.create_task(self._start(link, tasks), name="start-up")
        stopped = asyncio.create_task(stop.wait(), name="stop")
        await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()  # a start-up error ends the runner, as before
            await stopped
        else:
            logger.info("stop requested during start-up")
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
        logger.info("stopping: finishing the current step (at most {} s)", SHUTDOWN_GRACE_S)
        # First: no new container swap may start (one the process might not live to
        # finish). An update still preparing stops before its swap; the journal retries it.
        self._gateway.service.hold_swaps()
        self._gateway.cancel_waiting_start("teg-ota is stopping")
        self._stopping.set()  # RPC operations are refused from now on
        self._container.rpc_inbox().attach(None)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        finished = await asyncio.to_thread(self._exclusive.wait_idle, SHUTDOWN_GRACE_S)
        if not finished and self._mid_swap():
            # Stopping the old and starting the new controller takes at most the stop
            # grace: let the swap finish rather than leave a rollback to the next start.
            logger.info("a container swap is under way; letting it finish")
            finished = await asyncio.to_thread(
                self._exclusive.wait_idle, self._settings.stop_grace_s + SHUTDOWN_GRACE_S
            )
        if not finished:
            logger.warning("abandoning the current step; the journal resumes it at next start")
        self._container.inbox().attach(None)
        if isinstance(link, _Link):
            await asyncio.to_thread(link.stop, FLUSH_TIMEOUT_S)
        self._exclusive.close_offers()
        logger.info("teg-ota runner stopped; the controller keeps running")
        return 0

    async def _start(self, link: object, tasks: list[asyncio.Task[None]]) -> None:
        # Online first: a first build can take minutes, and ThingsBoard should see the
        # device (and its states, through the durable outbox) meanwhile. Assignments that
        # arrive now wait in the mailbox until start-up is done.
        self._container.inbox().attach(self._on_attributes)
        if isinstance(link, _RpcLink):
            self._container.rpc_inbox().attach(
                RpcDispatcher(
                    self._gateway,
                    link,
                    run_exclusive=self._rpc_exclusive,
                    run_aside=self._rpc_aside,
                )
            )
        if isinstance(link, _Link):
            link.start()
        if self._settings.uptime_telemetry_s > 0:
            tasks.append(asyncio.create_task(self._serve_uptime(link), name="uptime"))
        for step in (self._gateway.recover, self._gateway.ensure_running):
            try:
                await self._submit(step)
            except Exception:  # noqa: BLE001 - the watchdog retries what start-up could not
                logger.exception("start-up step {} failed", step.__name__)
        await self._submit(self._gateway.service.report_current_software)
        self._exclusive.open_offers()
        watcher = threading.Thread(target=self._watch_exits, name="teg-ota-exits", daemon=True)
        watcher.start()
        tasks.append(asyncio.create_task(self._serve_watchdog(), name="watchdog"))

    def _mid_swap(self) -> bool:
        try:
            journal = self._container.store().journal()
        except Exception:  # noqa: BLE001
            return False
        return journal is not None and journal.phase in (
            JournalPhase.SWAPPING,
            JournalPhase.ROLLING_BACK,
        )

    # ------------------------------------------------------------------ OTA

    def _on_attributes(self, topic: str, payload: bytes) -> None:
        """Called on the link's thread: parse here, hand over to the loop."""
        message = parse_ota_message(payload)
        if isinstance(message, OtaRequest):
            # repr: the values come from the network (a newline would forge a log line)
            logger.info("OTA assignment received: {!r} {!r}", message.title, message.version)
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._offer, message)
        elif isinstance(message, OtaDeleted):
            logger.info("OTA attributes deleted: {!r}", message.keys)
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._gateway.handle_deleted, message)
        else:
            logger.debug("attribute message on {!r} ignored: {}", topic, message)

    def _offer(self, request: OtaRequest) -> None:
        self._gateway.offer(request, then=self._rearm.set)

    def _submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        return asyncio.wrap_future(self._exclusive.submit(fn))

    def _newer_offer(self, target: str) -> str | None:
        """A request for another version waits: the waiting swap gives way. The same
        assignment re-sent (every reconnect) does not restart the wait."""
        waiting = self._exclusive.offer_waiting()
        if waiting is None or waiting == repr(target):
            return None
        return f"replaced by a newer request ({waiting})"

    # ------------------------------------------------------------------- RPC

    def _rpc_exclusive(self, job: Job) -> bool:
        """Called on the link's thread: queue ``job`` on the worker through the loop (as
        assignments are), so it runs after the start-up steps and whatever runs now."""
        return self._in_loop(lambda: self._queue_job(job))

    def _queue_job(self, job: Job) -> None:
        try:
            self._exclusive.submit(job)
        except RuntimeError:
            logger.warning("an RPC operation was dropped: the worker is closed")
            return
        # Queued first (jobs run before offers): a swap waiting for a lock or a window now
        # gives way to the operator's command, and its assignment comes back behind it.
        self._gateway.cancel_waiting_swap("an operator's RPC runs first")

    def _rpc_aside(self, job: Job) -> bool:
        """Called on the link's thread: run ``job`` on a thread of the loop's executor."""
        return self._in_loop(lambda: self._run_aside(job))

    def _run_aside(self, job: Job) -> None:
        if self._loop is not None:
            self._loop.run_in_executor(None, job)

    def _in_loop(self, callback: Callable[[], object]) -> bool:
        loop = self._loop
        if loop is None or self._stopping.is_set():
            return False
        try:
            loop.call_soon_threadsafe(callback)
        except RuntimeError:  # the loop closed meanwhile: the runner is stopping
            return False
        return True

    # ---------------------------------------------------------------- uptime

    async def _serve_uptime(self, link: object) -> None:
        """``ms_since_controller_startup`` every ``uptime_telemetry_s`` while a controller
        runs; not while the link is offline (a stale uptime is worth nothing, and the
        outbox must keep room for what is). Through the link's live path when it has one:
        never written to the outbox, so no SD card write every 20 s."""
        sink: TelemetrySink = self._container.telemetry()
        publish = (
            link.publish_live_telemetry
            if isinstance(link, _LiveTelemetry)
            else sink.publish_telemetry
        )
        clock = self._container.clock()
        while True:
            if not isinstance(link, _Online) or link.connected:
                try:
                    state = await asyncio.to_thread(self._runtime.controller_state)
                    values = uptime_telemetry(state, clock.now())
                    if values is not None:
                        publish(values)
                except (ContainerRuntimeError, TelemetryError) as exc:
                    logger.debug("uptime telemetry skipped: {}", exc)
                except Exception:  # noqa: BLE001 - the uptime must never end the runner
                    logger.exception("uptime telemetry failed")
            await asyncio.sleep(self._settings.uptime_telemetry_s)

    # -------------------------------------------------------------- watchdog

    def _watch_exits(self) -> None:
        """Follow the runtime's exit events and wake the watchdog at once on an exit.

        After an exit it stays quiet until the watchdog (or an update) has acted, or
        ``_WATCHER_REARM_S`` passed: while the controller is down the watchdog's own timer
        schedules the restart, and re-reading "still down" every second would only spin.
        """
        while not self._stopping.is_set():
            try:
                exited = self._runtime.wait_for_exit(_EXIT_WATCH_WINDOW_S)
            except Exception as exc:  # noqa: BLE001 - the watcher must outlive engine trouble
                logger.debug("exit watcher: {}", exc)
                self._stopping.wait(_WATCHER_REARM_S)
                continue
            if exited is not None and self._loop is not None:
                self._rearm.clear()
                self._loop.call_soon_threadsafe(self._controller_exited.set)
                self._rearm.wait(_WATCHER_REARM_S)

    async def _serve_watchdog(self) -> None:
        interval = self._settings.watchdog_interval_s
        while True:
            delay = interval
            try:
                # Through the worker: the backoff state is only ever touched on its thread.
                restart_in = await self._submit(self._gateway.watchdog.seconds_until_restart)
                if 0 < restart_in < delay:
                    delay = restart_in
            except Exception:  # noqa: BLE001
                logger.exception("watchdog schedule failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._controller_exited.wait(), timeout=delay)
            self._controller_exited.clear()
            try:
                if await self._submit(self._gateway.watchdog_tick):
                    self._rearm.set()
            except Exception:  # noqa: BLE001
                logger.exception("watchdog tick failed")


def run_forever(container: Container, settings: Settings) -> int:
    """Run until SIGTERM/SIGINT; returns the process exit code."""

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        return await Runner(container, settings).run(stop)

    return asyncio.run(main())
