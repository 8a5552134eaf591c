"""The seed's ``restart_controller_if_needed``: keep the controller running, with backoff.

The runner calls :meth:`Watchdog.tick` on every controller exit event and periodically as a
safety net. A controller that keeps crashing is reported (telemetry ``controller_state`` =
``CRASH_LOOP``), not silently spun. It is deliberately not reported as ``sw_state`` FAILED:
the software update did succeed, and a FAILED after UPDATED is exactly the inconsistent
dashboard ThingsBoard's own clients are known for. The one exception is the optional
crash-after-commit policy (``crash_rollback_within_s``): a version that crash-loops soon
after its UPDATED is rolled back, and then FAILED is what is true.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from teg_ota.domain.core import output_tail
from teg_ota.domain.core.backoff import RestartBackoff
from teg_ota.domain.model.outcome import Outcome
from teg_ota.domain.model.settings import WatchdogSettings
from teg_ota.domain.services.update_service import UpdateService
from teg_ota.ports.clock import Clock
from teg_ota.ports.container_runtime import ContainerRuntime, ContainerRuntimeError
from teg_ota.ports.telemetry_sink import TelemetryError, TelemetrySink
from teg_ota.ports.version_store import VersionStore

log = logging.getLogger(__name__)

NO_VERSION_ERROR = (
    "no controller version known: nothing was launched on this gateway and "
    "TEG_DEFAULT_CONTROLLER_VERSION is not set; assign a software package in ThingsBoard"
)


class Watchdog:
    def __init__(
        self,
        runtime: ContainerRuntime,
        store: VersionStore,
        telemetry: TelemetrySink,
        clock: Clock,
        service: UpdateService,
        settings: WatchdogSettings,
        random: Callable[[], float] | None = None,
    ) -> None:
        self._runtime = runtime
        self._store = store
        self._telemetry = telemetry
        self._clock = clock
        self._service = service
        self._policy = settings.backoff
        self._crash_rollback_within_s = settings.crash_rollback_within_s
        self._exit_codes: list[int] = []
        """Exit codes of the running version's crashes (the crash-loop rollback's evidence)."""
        self._backoff = RestartBackoff(settings.backoff, random)
        self._recovery_attempts = 0
        self._recovery_not_before = 0.0
        self._no_version_reported = False
        self._reported_state: str | None = None
        self._last_exit_code: int | None = None
        self._running_version: str | None = None

    @property
    def backoff(self) -> RestartBackoff:
        return self._backoff

    def seconds_until_restart(self) -> float:
        return self._backoff.seconds_until_restart(self._clock.monotonic())

    def restart_controller_if_needed(self) -> bool:
        """True when it acted (restart attempt, OTA request), like the seed's function."""
        if self._service.busy:
            return False
        if self._store.journal() is not None:
            return self._recover_left_over_update()
        try:
            state = self._runtime.controller_state()
        except ContainerRuntimeError as exc:
            log.warning("watchdog cannot see the controller: %s", exc)
            return False
        now = self._clock.monotonic()
        if state.running:
            if state.version != self._running_version:
                # A new version (an update, a rollback) starts with a clean slate.
                self._running_version = state.version
                self._backoff.reset()
                self._exit_codes.clear()
            self._backoff.observe_running(now)
            self._no_version_reported = False
            if self._backoff.failures == 0:
                self._publish_state("RUNNING")
            return False
        if state.exit_code is not None:
            self._last_exit_code = state.exit_code
        version = self._store.last_launched()
        if version is None:
            return self._ask_for_a_version(now)
        if version != self._running_version:
            # Another version was launched (an update it never saw running): its crashes
            # start a streak of their own, never the previous version's.
            self._running_version = version
            self._backoff.reset()
            self._exit_codes.clear()
        self._backoff.observe_down(now)
        if not self._backoff.restart_due(now):
            self._prepare_restart()
            return False
        if self._last_exit_code is not None:
            self._exit_codes = [*self._exit_codes[-9:], self._last_exit_code]
        if self._backoff.crash_looping:
            log.error(
                "controller %s keeps stopping (%d restarts without a stable run, last exit "
                "code %s)",
                version,
                self._backoff.failures,
                self._last_exit_code,
            )
            if self._roll_back_crash_loop(version, now):
                return True
            self._publish_state("CRASH_LOOP")
        log.warning("controller is not running; restarting %s", version)
        self._backoff.record_restart(now)
        self._service.launch(version)
        return True

    tick = restart_controller_if_needed

    def _prepare_restart(self) -> None:
        """While the restart waits out its delay, let the runtime make it cheap (create the
        replacement container now): the delay is time the controller is down anyway, so
        the restart, when due, is as quick as the engine's own restart policy."""
        prepare = getattr(self._runtime, "prepare_restart", None)  # absent: a runtime from
        if prepare is None:  # before issue 14 (an embedding product's own), restarts as before
            return
        try:
            prepare()
        except ContainerRuntimeError as exc:
            log.debug("could not prepare the controller's restart: %s", exc)

    def _roll_back_crash_loop(self, version: str, now: float) -> bool:
        """The optional policy: a version assigned and UPDATED less than
        ``crash_rollback_within_s`` ago that crash-loops goes back to the known-good one,
        reported FAILED with the evidence (its exit codes, the end of its output)."""
        within = self._crash_rollback_within_s
        updated = self._service.updated_at(version)
        if within <= 0 or updated is None or now - updated > within:
            return False
        try:
            shown = output_tail.summary(self._runtime.last_output(output_tail.SUMMARY_LINES))
        except ContainerRuntimeError as exc:
            log.warning("cannot read the output of the crash-looping %s: %s", version, exc)
            shown = ""
        codes = ", ".join(str(code) for code in self._exit_codes) or "unknown"
        evidence = (
            f"{version} crash-looped within {within:g} s of its update "
            f"({self._backoff.failures} restarts, exit codes {codes})"
        )
        if shown:
            evidence = f"{evidence}; last output: {shown}"
        log.error("%s: rolling back (TEG_CRASH_ROLLBACK_WITHIN_S)", evidence)
        self._service.forget_updated()  # one attempt: never a ping-pong between two versions
        result = self._service.rollback(failing=version, reason=evidence)
        if result.outcome is not Outcome.UPDATED:
            log.error("the crash-loop rollback of %s failed: %s", version, result.error)
            return False
        return True

    def _recover_left_over_update(self) -> bool:
        """Finish an update left unfinished (its recovery waited for the engine) before
        anything else touches the controller; retried with the restart backoff, so an
        engine that keeps failing is not hammered (nor the SD card with journal writes)."""
        now = self._clock.monotonic()
        if now < self._recovery_not_before:
            return False
        self._service.recover()
        if self._store.journal() is None:
            self._recovery_attempts = 0
            return True
        self._recovery_attempts += 1
        self._recovery_not_before = now + self._policy.delay_for(self._recovery_attempts)
        return False

    def _ask_for_a_version(self, now: float) -> bool:
        self._backoff.observe_down(now)
        if not self._backoff.restart_due(now):
            return False
        self._backoff.record_restart(now)
        try:
            self._telemetry.request_ota_attributes()
            if not self._no_version_reported:
                # Telemetry outside sw_state: nothing was assigned, so the device must land
                # in no dashboard tab (a FAILED would put a never-assigned device in Failed).
                log.error("%s", NO_VERSION_ERROR)
                self._telemetry.publish_telemetry(
                    {"controller_state": "NO_VERSION", "controller_error": NO_VERSION_ERROR}
                )
                self._no_version_reported = True
        except TelemetryError as exc:
            log.error("could not reach ThingsBoard to ask for a version: %s", exc)
        return True

    def _publish_state(self, state: str) -> None:
        if state == self._reported_state:
            return
        values: dict[str, object] = {
            "controller_state": state,
            "controller_restarts": self._backoff.failures,
        }
        if self._last_exit_code is not None:
            values["controller_last_exit_code"] = self._last_exit_code
        try:
            self._telemetry.publish_telemetry(values)
            self._reported_state = state
        except TelemetryError as exc:
            log.error("could not queue controller state: %s", exc)
