"""What ThingsBoard hears of updates: OTA states in order, once, with what runs now.

The title is remembered here because ``current_sw_title`` must name the package title
ThingsBoard knows even when the gateway was not configured with one. The durable last
answer keeps the re-sent assignment (every reconnect, every restart) from producing a
fresh UPDATED or FAILED each time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from teg_ota.domain.model.errors import VersionStoreError
from teg_ota.domain.model.journal import Answer
from teg_ota.domain.model.ota_state import OtaProgress, OtaState
from teg_ota.domain.model.report import OtaReport
from teg_ota.ports.container_runtime import ContainerRuntime, ContainerRuntimeError
from teg_ota.ports.telemetry_sink import TelemetryError, TelemetrySink
from teg_ota.ports.version_store import VersionStore

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
    """Publishes OTA states and remembers, durably, the last terminal answer, so a
    re-sent assignment is answered once: the same version confirmed, the same refusal told
    once (``VersionStore.answered``)."""

    def __init__(
        self, telemetry: TelemetrySink, current: CurrentSoftware, store: VersionStore
    ) -> None:
        self._telemetry = telemetry
        self.current = current
        self._store = store

    def report(
        self,
        progress: OtaProgress,
        state: OtaState,
        *,
        error: str | None = None,
        current: str | None = None,
        listener: ProgressListener = quiet,
        subject: str = "",
        publish: bool = True,
    ) -> None:
        """One state of an update; ``current`` goes with terminal states only. With
        ``publish`` False (nothing was assigned: a start-up launch) only the listener hears
        it, so a never-assigned device lands in no dashboard tab."""
        progress.advance(state)
        notify(listener, f"[{state}] {error or subject}")
        if not publish:
            return
        terminal = state.is_terminal
        answer = Answer(state, subject) if terminal and subject else None
        if state is OtaState.DOWNLOADING:
            # A new update: from here on, an answer naming its target is its own answer.
            self._remember(None)
        elif answer is not None and self._answered() == answer:
            # Told before a crash that came before the journal was cleared: once is enough
            # (a second UPDATED would carry a new timestamp).
            log.info("%s for %s was already reported; not repeated", state, subject)
            return
        self._publish(
            OtaReport(
                state=state,
                error=error,
                current_title=self.current.title() if terminal else None,
                current_version=current if terminal else None,
            )
        )
        if terminal:
            # After the publish: a crash between the two repeats the state, never loses it.
            self._remember(answer)

    def alone(
        self,
        state: OtaState,
        error: str,
        current: str | None = None,
        version: str | None = None,
        title: str | None = None,
    ) -> None:
        """A terminal state for a request that never became an update (rejected up front,
        refused): told once per assignment (``version`` and ``title``) when one is given."""
        if version is not None:
            answer = Answer(state, version, title)
            if self._answered() == answer:
                return
            self._remember(answer)
        else:
            self._remember(None)
        self._publish(OtaReport(state, error, self.current.title(), current))

    def confirm_running(self, version: str) -> None:
        """UPDATED for the version that runs, once: ThingsBoard re-sends the assignment on
        every reconnect (and after a restart), the dashboard needs to hear it only once."""
        answer = Answer(OtaState.UPDATED, version)
        if self._answered() == answer:
            return
        self._remember(answer)
        self._publish(OtaReport(OtaState.UPDATED, None, self.current.title(), version))

    def forget(self) -> None:
        """ThingsBoard unassigned the package: the next assignment is answered afresh."""
        self._remember(None)

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
            self.telemetry(values)

    def telemetry(self, values: Mapping[str, object]) -> None:
        try:
            self._telemetry.publish_telemetry(values)
        except TelemetryError as exc:
            log.error("could not queue telemetry %s: %s", sorted(values), exc)

    def request_assignment(self) -> None:
        try:
            self._telemetry.request_ota_attributes()
        except TelemetryError as exc:
            log.error("could not ask ThingsBoard for the assignment: %s", exc)

    def _answered(self) -> Answer | None:
        try:
            return self._store.answered()
        except VersionStoreError as exc:  # pragma: no cover - stores log and return None
            log.error("could not read the last answer: %s", exc)
            return None

    def _remember(self, answer: Answer | None) -> None:
        try:
            self._store.set_answered(answer)
        except VersionStoreError as exc:
            log.error("could not record the answer to ThingsBoard: %s", exc)

    def _publish(self, report: OtaReport) -> None:
        try:
            self._telemetry.publish_ota_state(report)
        except TelemetryError as exc:
            log.error("could not queue OTA state %s: %s", report.state, exc)
