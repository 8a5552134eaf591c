"""The seed's ``start_controller(version)``, made safe, and the operations around it.

Admission (which request becomes an update) is ``core.decision``; the update itself is the
phase table (``core.phases``) driven by :class:`UpdateFlow`; recovery is
``core.recovery``. This class only ties them to the ports. It holds no lock and runs no
thread: one operation at a time is the app layer's ``Exclusive``.
"""

from __future__ import annotations

import logging

from teg_ota.domain.core import known_good, phases
from teg_ota.domain.core.decision import (
    AlreadyRunning,
    Defer,
    Ignore,
    RefuseFailed,
    Reject,
    StartUpdate,
    UpdateContext,
    decide_update,
)
from teg_ota.domain.core.ota_messages import OtaRequest
from teg_ota.domain.model.controller import ControllerState
from teg_ota.domain.model.errors import (
    ContainerRuntimeError,
    RuntimeUnavailable,
    VersionStoreError,
)
from teg_ota.domain.model.journal import JournalPhase, UpdateJournal
from teg_ota.domain.model.ota_state import OtaState
from teg_ota.domain.model.outcome import Outcome, UpdateResult
from teg_ota.domain.model.package import PackageRef
from teg_ota.domain.model.settings import UpdateSettings
from teg_ota.domain.model.versions import Version, normalised, parse_version
from teg_ota.domain.services.image_maker import ImageMaker
from teg_ota.domain.services.operator_commands import OperatorCommands
from teg_ota.domain.services.recoverer import Recoverer
from teg_ota.domain.services.reporting import CurrentSoftware, ProgressListener, Reporter, quiet
from teg_ota.domain.services.swap_gate import DEFERRED_KEY, SwapGate
from teg_ota.domain.services.update_flow import UpdateFlow, UpdateRun
from teg_ota.ports.clock import Clock
from teg_ota.ports.container_runtime import ContainerRuntime
from teg_ota.ports.package_source import PackageSource
from teg_ota.ports.telemetry_sink import TelemetrySink
from teg_ota.ports.update_lock import UpdateLock
from teg_ota.ports.version_store import VersionStore

log = logging.getLogger(__name__)

RECOVERY_PENDING = "an interrupted update is still being recovered; try again later"


def refusal(version: str, previous_error: str) -> str:
    return (
        f"{previous_error} [{version} is not retried: run 'teg-ota update {version} --force' "
        "on the gateway, or unassign the package in ThingsBoard and assign it again]"
    )


def package_of(request: OtaRequest, version: Version) -> PackageRef:
    return PackageRef(
        version=version,
        title=request.title,
        url=request.url,
        checksum=request.checksum,
        checksum_algorithm=request.checksum_algorithm,
        size=request.size,
        tag=request.tag,
    )


class UpdateService(OperatorCommands):
    def __init__(
        self,
        runtime: ContainerRuntime,
        source: PackageSource,
        telemetry: TelemetrySink,
        store: VersionStore,
        clock: Clock,
        settings: UpdateSettings,
        current: CurrentSoftware | None = None,
        update_lock: UpdateLock | None = None,
    ) -> None:
        self._runtime = runtime
        self._store = store
        self._clock = clock
        self._settings = settings
        self.current = current or CurrentSoftware(runtime, settings.sw_title)
        self._reporter = Reporter(telemetry, self.current, store)
        self._images = ImageMaker(runtime, source, settings, clock)
        gate = SwapGate(update_lock, runtime, clock, self._reporter, settings)
        self._flow = UpdateFlow(
            runtime, self._images, store, self._reporter, clock, settings, gate=gate
        )
        self._in_flight: str | None = None
        self._updated: tuple[str, float] | None = None
        self._recoverer = Recoverer(runtime, store, self._flow, clock, settings)

    # ----------------------------------------------------------------- queries

    @property
    def settings(self) -> UpdateSettings:
        return self._settings

    @property
    def in_flight(self) -> str | None:
        """Target of the update being performed (or recovered) now, if any."""
        return self._in_flight or self._recoverer.in_flight

    @property
    def busy(self) -> bool:
        return self.in_flight is not None

    def current_title(self) -> str | None:
        return self.current.title()

    def current_software(self) -> tuple[str | None, str | None]:
        return self.current()

    def report_current_software(self) -> None:
        self._reporter.current_software()

    def hold_swaps(self) -> None:
        """Shutdown: an update may still finish preparing, but starts no container swap."""
        self._flow.swaps_held = True

    # ------------------------------------------------------------ OTA requests

    def screen(self, request: OtaRequest, in_flight: str) -> UpdateResult | None:
        """A request arriving while ``in_flight`` runs: ``None`` when it is to wait (latest
        wins); else the answer now (an invalid version is reported FAILED at once)."""
        self.current.saw_title(request.title)
        decision = decide_update(
            UpdateContext(
                request=request,
                running_version=None,
                configured_title=self._settings.sw_title,
                in_flight=in_flight,
            )
        )
        if isinstance(decision, Defer):
            return None
        if isinstance(decision, Reject):
            self._reporter.alone(
                OtaState.FAILED, decision.error, version=request.version, title=request.title
            )
            return UpdateResult(Outcome.FAILED, error=decision.error)
        reason = decision.reason if isinstance(decision, Ignore) else str(decision)
        return UpdateResult(Outcome.IGNORED, error=reason)

    def handle_request(
        self, request: OtaRequest, on_progress: ProgressListener | None = None
    ) -> UpdateResult:
        """Decide and act on one OTA request (the caller ensures one at a time)."""
        self.current.saw_title(request.title)
        if self._store.journal() is not None:
            # An interrupted update (its recovery waited for the engine) comes first: a
            # new update would overwrite its journal and swap over an unknown state.
            self._recover_current()
            if self._store.journal() is not None:
                return UpdateResult(Outcome.IGNORED, request.version, None, RECOVERY_PENDING)
        try:
            state = self._runtime.controller_state()
        except RuntimeUnavailable as exc:
            error = f"update to {request.version!r} not started: {exc}"
            self._reporter.alone(OtaState.FAILED, error)
            return UpdateResult(Outcome.FAILED, version=request.version, error=error)
        running = state.version if state.running else None
        failed = self._store.failed()
        decision = decide_update(
            UpdateContext(
                request,
                running,
                self._settings.sw_title,
                failed=failed,
                fingerprint=self._settings.fingerprint,
                running_commit=state.commit if state.running else None,
                recorded_commit=self._flow.recorded_commit(request.version),
                allow_moved_tags=self._settings.allow_moved_tags,
            )
        )
        log.info("OTA request for %r: %s", request.version, type(decision).__name__)
        match decision:
            case AlreadyRunning(version=version, recheck=recheck):
                if recheck and state.commit is not None:
                    package = package_of(request, parse_version(version))
                    if self._images.moved_from(package, state.commit) is not None:
                        return self._update(package, state, on_progress or quiet)
                if failed is not None and failed.version != version:
                    self._forget_failure()
                self._flow.record_running_commit(version, state.commit)
                self._reporter.confirm_running(version)
                return UpdateResult(Outcome.ALREADY_RUNNING, version, version)
            case Ignore(reason=reason):
                return UpdateResult(Outcome.IGNORED, error=reason, running_version=running)
            case RefuseFailed(version=version, previous_error=previous_error):
                error = refusal(version, previous_error)
                log.warning("not retrying %s: %s", version, error)
                # Told once (durably): the dashboard shows FAILED, not a stuck INITIATED.
                self._reporter.alone(OtaState.FAILED, error, running, version=version)
                return UpdateResult(Outcome.REFUSED, version, running, previous_error)
            case Reject(error=error):
                # Told once per assignment (title and version), like every answer.
                self._reporter.alone(
                    OtaState.FAILED, error, running, version=request.version, title=request.title
                )
                return UpdateResult(Outcome.FAILED, request.version, running, error)
            case StartUpdate(version=version, clears_failed=clears_failed):
                if clears_failed:
                    self._forget_failure()
                package = package_of(request, version)
                result = self._update(package, state, on_progress or quiet)
                if result.outcome is Outcome.UPDATED:
                    # What ThingsBoard assigns may have changed while this one ran: ask once
                    # and act on what is current (the answer naming this version is then
                    # confirmed silently). Not after a failure: a failure that is not
                    # remembered (transient, the gateway's) would be retried at once, in a
                    # loop; the next reconnect retries it instead.
                    self._reporter.request_assignment()
                return result
        raise AssertionError(f"unhandled decision {decision!r}")  # pragma: no cover

    # ----------------------------------------------------------------- updates

    def _update(
        self,
        package: PackageRef,
        state: ControllerState,
        on_progress: ProgressListener,
        *,
        publish: bool = True,
    ) -> UpdateResult:
        previous = normalised(state.version) if state.running else None
        if previous == package.version.value and state.running:
            # The running version rebuilt over itself (a moved tag): a rollback starts the
            # image it runs from, kept under its commit; without that, no rebuild.
            previous = self._keep_running_image(package.version, state)
            if previous is None:
                error = (
                    f"{package.version} runs and would be rebuilt over itself, but the image "
                    "it runs from cannot be kept for a rollback; it was left running"
                )
                log.error("%s", error)
                if publish:
                    self._reporter.alone(OtaState.FAILED, error, package.version.value)
                return UpdateResult(Outcome.FAILED, package.version.value, previous, error)
        if previous is None:
            # Nothing runs, or a controller whose version cannot be told: roll back to what
            # the store knows rather than to nothing.
            previous = known_good.newest(self._store.known_good_history())
            previous = previous or self._store.last_launched()
        if previous == package.version.value:
            previous = None  # (re)installing the recorded version: nothing older to go back to
        run = UpdateRun(
            package=package,
            journal=UpdateJournal(
                target=package.version.value,
                previous=previous,
                phase=JournalPhase.PREPARING,
                started_at=self._clock.now(),
            ),
            old_running=state.running,
            grace_s=self._settings.health_grace_s,
            on_progress=on_progress,
            publish=publish,
            gated=publish,  # the operator's own commands (rollback, launch) never wait
        )
        self._in_flight = package.version.value
        self._flow.gate.new_update()
        try:
            result = self._flow.drive(run, phases.start())
        finally:
            self._in_flight = None
        if publish and result.outcome is Outcome.UPDATED:
            self._updated = (package.version.value, self._clock.monotonic())
        return result

    def forget_updated(self) -> None:
        """The crash-loop rollback was tried: once per update, whatever it gave."""
        self._updated = None

    def updated_at(self, version: str) -> float | None:
        """When (monotonic) an assignment last brought ``version`` to UPDATED in this process;
        ``None`` when it did not (a restart of teg-ota forgets it, as it forgets the
        watchdog's crash count)."""
        if self._updated is not None and self._updated[0] == version:
            return self._updated[1]
        return None

    def _forget_failure(self) -> None:
        """A remembered failure no longer applies. Not writable: it is only kept longer
        (logged); the request in hand goes on, and is answered."""
        try:
            self._store.set_failed(None)
        except VersionStoreError as exc:
            log.error("could not forget the failed version: %s", exc)

    def _keep_running_image(self, version: Version, state: ControllerState) -> str | None:
        if state.commit is None or state.image_id is None:
            return None
        try:
            return self._images.keep_as_commit(version, state.commit, state.image_id)
        except ContainerRuntimeError as exc:
            log.warning("cannot keep the image of %s for a rollback: %s", version, exc)
            return None

    # ---------------------------------------------------------------- recovery

    def recover(self) -> UpdateResult:
        """Finish or undo an update a crash or power cut interrupted (``Recoverer``)."""
        if self._flow.gate.gated and self._store.journal() is not None:
            # It may have been waiting to swap: what ThingsBoard was told is over.
            self._reporter.telemetry({DEFERRED_KEY: ""})
        return self._recoverer.recover()

    def _recover_current(self) -> UpdateResult:
        return self._recoverer.recover_current()
