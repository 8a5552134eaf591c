"""What ThingsBoard hears of updates: OTA states in order, once, with what runs now.

The title is remembered here because ``current_sw_title`` must name the package title
ThingsBoard knows even when the gateway was not configured with one. The "already
confirmed" memory keeps the re-sent assignment (every reconnect) from producing a fresh
UPDATED each time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from teg_ota.domain.model.ota_state import OtaProgress, OtaState
from teg_ota.domain.model.report import OtaReport
from teg_ota.ports.container_runtime import ContainerRuntime, ContainerRuntimeError
from teg_ota.ports.telemetry_sink import TelemetryError, TelemetrySink

log = logging.getLogger(__name__)

ProgressListener = Callable[[str], None]


def quiet(_: str) -> None:
    return None


def notify(listener: ProgressListener, line: str) -> None:
    """A listener that fails (a closed terminal) must not fail the update."""
    try:
        listener(line)
    except Exception:
        log.debug("progress listener failed", exc_info=True)


class CurrentSoftware:
    """``(title, version)`` of what runs now. Built before the telemetry link, which asks
    for it on every (re)connect, so the composition root needs no late binding."""

    def __init__(self, runtime: ContainerRuntime, configured_title: str | None) -> None:
        self._runtime = runtime
        self._configured = configured_title
        self._seen: str | None = configured_title

    def title(self) -> str | None:
        return self._configured or self._seen

    def saw_title(self, title: str | None) -> None:
        if title is not None and self._configured is None:
            self._seen = title

    def __call__(self) -> tuple[str | None, str | None]:
        try:
            state = self._runtime.controller_state()
        except ContainerRuntimeError:
            return self.title(), None
        return self.title(), state.version if state.running else None


class Reporter:
    def __init__(self, telemetry: TelemetrySink, current: CurrentSoftware) -> None:
        self._telemetry = telemetry
        self.current = current
        self._confirmed: str | None = None

    def report(
        self,
        progress: OtaProgress,
        state: OtaState,
        *,
        error: str | None = None,
        current: str | None = None,
        listener: ProgressListener = quiet,
        subject: str = "",
    ) -> None:
        """One state of an update; ``current`` goes with terminal states only."""
        progress.advance(state)
        if state is OtaState.FAILED:
            self._confirmed = None
        elif state is OtaState.UPDATED and current:
            self._confirmed = current
        notify(listener, f"[{state}] {error or subject}")
        terminal = state.is_terminal
        self._publish(
            OtaReport(
                state=state,
                error=error,
                current_title=self.current.title() if terminal else None,
                current_version=current if terminal else None,
            )
        )

    def alone(self, state: OtaState, error: str, current: str | None = None) -> None:
        """A terminal state for a request that never became an update (rejected up front)."""
        self._confirmed = None
        self._publish(OtaReport(state, error, self.current.title(), current))

    def confirm_running(self, version: str) -> None:
        """UPDATED for the version that runs, once per process: ThingsBoard re-sends the
        assignment on every reconnect, the dashboard needs to hear it only once."""
        if self._confirmed == version:
            return
        self._confirmed = version
        self._publish(OtaReport(OtaState.UPDATED, None, self.current.title(), version))

    def current_software(self) -> None:
        """``current_sw_title`` / ``current_sw_version``: after start-up and after the
        watchdog started a controller, not only on connect."""
        title, version = self.current()
        values = {
            key: value
            for key, value in (("current_sw_title", title), ("current_sw_version", version))
            if value is not None
        }
        if values:
            try:
                self._telemetry.publish_telemetry(values)
            except TelemetryError as exc:
                log.error("could not queue the current software: %s", exc)

    def _publish(self, report: OtaReport) -> None:
        try:
            self._telemetry.publish_ota_state(report)
        except TelemetryError as exc:
            log.error("could not queue OTA state %s: %s", report.state, exc)
