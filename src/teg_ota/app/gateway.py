"""The library facade: one object an embedding product (or the runner) drives.

Products that own their MQTT connection hand attribute payloads to
:meth:`Gateway.handle_attributes` and call :meth:`Gateway.watchdog_tick` from their main
loop; everything else (Docker, Git, the version store) stays inside. Every operation goes
through the process's one :class:`~teg_ota.app.exclusive.Exclusive`; an assignment first
waits its random moment of the update start window
(:class:`~teg_ota.app.start_spread.StartSpread`), off the worker.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from loguru import logger

from teg_ota.app.exclusive import Exclusive
from teg_ota.app.start_spread import StartSpread
from teg_ota.app.status_view import GatewayStatus, read_status
from teg_ota.domain.core.ota_messages import (
    OtaDeleted,
    OtaRequest,
    is_ota_notification,
    parse_ota_message,
)
from teg_ota.domain.model.outcome import Outcome, UpdateResult
from teg_ota.domain.model.versions import normalised
from teg_ota.domain.services.operator_commands import ASSIGNMENT_KEYS
from teg_ota.domain.services.update_service import UpdateService
from teg_ota.domain.services.watchdog import Watchdog
from teg_ota.ports.container_runtime import (
    ContainerRuntime,
    ContainerRuntimeError,
    ControllerState,
)
from teg_ota.ports.version_store import VersionStore, VersionStoreError


class Gateway:
    def __init__(
        self,
        service: UpdateService,
        watchdog: Watchdog,
        runtime: ContainerRuntime,
        store: VersionStore,
        exclusive: Exclusive | None = None,
        spread: StartSpread | None = None,
    ) -> None:
        self.service = service
        self.watchdog = watchdog
        self.exclusive = exclusive or Exclusive()
        self._spread = spread if spread is not None and spread.window_s > 0 else None
        self._runtime = runtime
        self._store = store

    # ------------------------------------------------------------ OTA requests

    def handle_attributes(self, payload: object) -> bool:
        """The seed's ``on_msg_check_for_ota_update``: acts on an OTA attribute payload and
        returns whether it was an OTA notification. Synchronous when nothing else runs;
        while an update runs the request waits its turn (latest wins)."""
        message = parse_ota_message(payload)
        if isinstance(message, OtaRequest):
            self.handle_request(message)
        elif isinstance(message, OtaDeleted):
            self.handle_deleted(message)
        else:
            logger.debug("attribute message not acted on: {}", message)
        return is_ota_notification(message)

    def handle_request(
        self, request: OtaRequest, on_progress: Callable[[str], None] | None = None
    ) -> UpdateResult:
        if self.exclusive.busy:
            # Also on the worker's own thread: a request made from inside an operation (a
            # progress listener) waits for that operation rather than nesting in it.
            early = self.service.screen(request, self.service.in_flight or "?")
            if early is not None:
                return early
            self.offer(request)
            return UpdateResult(Outcome.DEFERRED, version=normalised(request.version))
        if self._spread is not None:
            # Nothing runs: the caller's thread waits the spread (the worker stays free).
            why_not = self._spread.wait(self._spread.begin())
            if why_not is not None:
                return UpdateResult(Outcome.IGNORED, normalised(request.version), error=why_not)
        return self.exclusive.run(self.service.handle_request, request, on_progress)

    def handle_deleted(self, message: OtaDeleted) -> None:
        """The package was unassigned: a queued update that has not started is cancelled,
        and the memory of failures and answers is forgotten (after what runs now)."""
        if not ASSIGNMENT_KEYS & set(message.keys):
            return
        # The spread first: a wait ending in between would queue its offer after the
        # mailbox was emptied (the same order as ``offer``: begin, then cancel_offer).
        if self._spread is not None and self._spread.cancel("its package was unassigned"):
            logger.info("the update waiting to start was cancelled: its package was unassigned")
        if self.exclusive.cancel_offer():
            logger.info("the queued update was cancelled: its package was unassigned")
        self.service.cancel_waiting_swap("its package was unassigned", resend=False)
        self.exclusive.submit(self.service.forget_assignment, message.keys)

    def cancel_waiting_start(self, reason: str) -> None:
        """An assignment still waiting for its moment of the start window is dropped (the
        runner stops: the next start asks ThingsBoard for the assignment again)."""
        if self._spread is not None and self._spread.cancel(reason):
            logger.info("the update waiting to start was cancelled: {}", reason)

    def offer(self, request: OtaRequest, then: Callable[[], object] | None = None) -> None:
        """Queue ``request`` behind what runs; a newer offer replaces it (latest wins).
        ``then`` runs after it, on the same thread. With an update start window it is
        queued at its random moment of the window: until then a newer request replaces it
        and an unassignment cancels it just the same."""
        if self._spread is None:
            self._queue(request, then)
            return
        ticket = self._spread.begin()
        if self.exclusive.cancel_offer():  # latest wins now, not when this one is queued
            logger.info("the queued update was superseded by {!r}", request.version)
        spread = self._spread
        threading.Thread(
            target=lambda: spread.wait(ticket, then=lambda: self._queue(request, then)),
            name="teg-ota-start-spread",
            daemon=True,
        ).start()

    def _queue(self, request: OtaRequest, then: Callable[[], object] | None) -> None:
        name = repr(normalised(request.version) or request.version)  # as the gate compares
        self.exclusive.offer(name, lambda: self._run_offered(request, then))

    def _run_offered(self, request: OtaRequest, then: Callable[[], object] | None) -> None:
        try:
            self.service.handle_request(request)
        except Exception:  # noqa: BLE001 - the gateway must outlive any single update
            logger.exception("update to {!r} crashed", request.version)
            try:
                self.service.recover()
            except Exception:  # noqa: BLE001 - the watchdog retries the recovery
                logger.exception("recovery after the crashed update failed")
        if then is not None:
            then()

    def wait_idle(self, timeout: float) -> bool:
        """True once no request runs or waits, its start spread included (tests,
        embedding products)."""
        if self._spread is not None and not self._spread.wait_settled(timeout):
            return False
        return self.exclusive.wait_idle(timeout)

    # ------------------------------------------------------------------ commands

    def watchdog_tick(self) -> bool:
        """The seed's ``restart_controller_if_needed``; does nothing while an operation
        runs (the caller's main loop is not blocked by an update)."""
        if self.exclusive.busy and not self.exclusive.on_own_thread():
            return False
        return self.exclusive.run(self.watchdog.restart_controller_if_needed)

    def update(
        self,
        version: str,
        *,
        force: bool = False,
        on_progress: Callable[[str], None] | None = None,
    ) -> UpdateResult:
        return self.exclusive.run(
            self.service.start_controller, version, force=force, on_progress=on_progress
        )

    def force_swap(self, version: str) -> None:
        """End the wait of a swap to ``version`` for the controller's update lock or a
        maintenance window now, without waiting for the worker (any thread)."""
        self.service.force_swap(version)

    def cancel_waiting_swap(self, why: str) -> None:
        """An operator's command must run now: a swap waiting for the lock or a window
        gives way, and its assignment is asked for again to come back behind it."""
        self.service.cancel_waiting_swap(why, resend=True)

    def update_safely(self, version: str) -> UpdateResult:
        return self.exclusive.run(self.service.start_controller_safely, version)

    def rollback(self, on_progress: Callable[[str], None] | None = None) -> UpdateResult:
        if on_progress is None:
            return self.exclusive.run(self.service.rollback)
        return self.exclusive.run(self.service.rollback, on_progress)

    def recover(self) -> UpdateResult:
        return self.exclusive.run(self.service.recover)

    def stop_controller(self) -> None:
        self.exclusive.run(self.service.stop_controller)

    def restart_controller(self) -> UpdateResult:
        """Stop the controller and start the same version again at once, no backoff wait
        (RPC ``restart_controller``). One operation under the Exclusive: the watchdog runs
        on the same worker, never sees the controller down, and counts no crash."""
        return self.exclusive.run(self._restart_controller)

    def _restart_controller(self) -> UpdateResult:
        if self._store.journal() is not None:
            return UpdateResult(Outcome.FAILED, error="an unfinished update is recovered first")
        state = self._runtime.controller_state()
        version = (state.version if state.running else None) or self._store.last_launched()
        if version is None:
            return UpdateResult(Outcome.FAILED, error="no controller version known")
        logger.info("restarting controller {}", version)
        self.service.stop_controller()
        return self.service.launch(version)

    def report_current_software(self) -> None:
        self.exclusive.run(self.service.report_current_software)

    def ensure_running(self) -> UpdateResult:
        """Start-up: run the last launched version (else the default, else the version of
        the stopped controller container) if nothing runs, trying the next when one cannot
        be started. When no version is known at all, the watchdog asks ThingsBoard and
        reports FAILED."""
        return self.exclusive.run(self._ensure_running)

    def _ensure_running(self) -> UpdateResult:
        try:
            state = self._runtime.controller_state()
        except ContainerRuntimeError as exc:
            # Not fatal (dockerd may still be starting): the watchdog starts the controller
            # as soon as the engine answers.
            logger.warning("container engine not available at start-up: {}", exc)
            return UpdateResult(Outcome.FAILED, error=str(exc))
        if state.running:
            self._adopt(state)
            return UpdateResult(Outcome.ALREADY_RUNNING, state.version, state.version)
        candidates = [
            self._store.last_launched(),
            self._store.default_version(),
            state.version if state.exists else None,
        ]
        result = UpdateResult(Outcome.FAILED, error="no controller version known")
        tried: list[str] = []
        for version in candidates:
            if version is None or version in tried:
                continue
            if tried:
                logger.warning("{} could not be started; trying {}", tried[-1], version)
            tried.append(version)
            result = self.service.launch(version)
            if result.outcome in (Outcome.UPDATED, Outcome.ALREADY_RUNNING):
                return result
        if not tried:
            self.watchdog.restart_controller_if_needed()
        return result

    def _adopt(self, state: ControllerState) -> None:
        """A controller already runs at start-up (teg-ota restarted, or the original
        gateway started it): it is left as it is, and its version recorded as launched and
        known good when nothing says otherwise, so a rollback has somewhere to go. The next
        update replaces it with teg-ota's container settings."""
        version = normalised(state.version)
        if version is None:
            return
        if state.commit is None:
            logger.info("adopting the running controller {} (not started by teg-ota)", version)
        try:
            if self._store.last_launched() != version:
                self._store.set_last_launched(version)
            if not self._store.known_good_history():
                self._store.set_known_good_history((version,))
        except VersionStoreError as exc:
            logger.error("could not record the running controller {}: {}", version, exc)

    def status(self) -> GatewayStatus:
        return read_status(self._runtime, self._store)
