"""The seed's ``start_controller(version)``, made safe: build first, swap last, health-gate,
roll back on failure, and journal every phase so a power cut ends in a known state.

Order of an update (docs/architecture.md has the diagram):

1. PREPARING  - DOWNLOADING: fetch, resolve, reset, build (old controller keeps running);
                DOWNLOADED; VERIFIED: the image carries the commit the version resolves to.
2. SWAPPING   - UPDATING: stop the old controller, start the new one (the only downtime).
3. HEALTH_CHECK - the new controller must stay up (and healthy) for the grace period.
4. COMMITTING - UPDATED; last launched / known-good persisted; old images collected.
   or ROLLING_BACK - the previous version is started again; FAILED names both versions.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

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
from teg_ota.domain.core.ota_messages import (
    OtaRequest,
    is_ota_notification,
    parse_ota_message,
)
from teg_ota.domain.model.errors import (
    DiskSpaceLow,
    HealthCheckFailed,
    InvalidVersion,
    UpdateFailed,
    VerificationFailed,
)
from teg_ota.domain.model.journal import FailedVersion, JournalPhase, UpdateJournal
from teg_ota.domain.model.ota_state import OtaProgress, OtaState
from teg_ota.domain.model.outcome import Outcome, UpdateResult
from teg_ota.domain.model.settings import UpdateSettings
from teg_ota.domain.model.versions import Version, image_tag, parse_version
from teg_ota.ports.clock import Clock
from teg_ota.ports.container_runtime import (
    COMMIT_LABEL,
    VERSION_LABEL,
    ContainerRuntime,
    ContainerRuntimeError,
    ControllerState,
    Health,
    RuntimeUnavailable,
)
from teg_ota.ports.source_repo import FetchFailed, SourceRepo, SourceRepoError
from teg_ota.ports.telemetry_sink import OtaReport, TelemetryError, TelemetrySink
from teg_ota.ports.version_store import VersionStore, VersionStoreError

log = logging.getLogger(__name__)

ProgressListener = Callable[[str], None]

_TRANSIENT = (FetchFailed, RuntimeUnavailable)
"""Failures worth retrying when ThingsBoard re-sends the assignment (next reconnect):
the version itself is not to blame, so it is not remembered as failed."""

_HEALTH_POLL_S = 5.0


def _quiet(_: str) -> None:
    return None


def _notify(listener: ProgressListener, line: str) -> None:
    """A listener that fails (a closed terminal) must not fail the update."""
    try:
        listener(line)
    except Exception:
        log.debug("progress listener failed", exc_info=True)


def _normalised(version: str | None) -> str | None:
    """The canonical form of a version, or None when it is not a valid one."""
    if version is None:
        return None
    try:
        return parse_version(version).value
    except InvalidVersion:
        return None


@dataclass
class _Update:
    """One update in progress: its version, image, journal and reported states."""

    version: Version
    tag: str
    previous: str | None
    old_running: bool
    journal: UpdateJournal
    progress: OtaProgress
    on_progress: ProgressListener


class UpdateService:
    """Runs updates one at a time; a request arriving meanwhile waits (latest wins)."""

    def __init__(
        self,
        runtime: ContainerRuntime,
        repo: SourceRepo,
        telemetry: TelemetrySink,
        store: VersionStore,
        clock: Clock,
        settings: UpdateSettings,
    ) -> None:
        self._runtime = runtime
        self._repo = repo
        self._telemetry = telemetry
        self._store = store
        self._clock = clock
        self._settings = settings
        self._lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._in_flight: str | None = None
        self._pending: OtaRequest | None = None
        self._draining = False
        self._queue_idle = threading.Event()
        self._queue_idle.set()
        self._swaps_held = False
        self._last_title: str | None = settings.sw_title
        self._confirmed: str | None = None

    # ----------------------------------------------------------------- queries

    @property
    def settings(self) -> UpdateSettings:
        return self._settings

    @property
    def in_flight(self) -> str | None:
        """Target of the update being performed now, if any."""
        return self._in_flight

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    def current_title(self) -> str | None:
        return self._settings.sw_title or self._last_title

    def current_software(self) -> tuple[str | None, str | None]:
        """(title, version) of what runs now, for ``current_sw_*`` on every (re)connect."""
        try:
            state = self._runtime.controller_state()
        except ContainerRuntimeError:
            return self.current_title(), None
        return self.current_title(), state.version if state.running else None

    def report_current_software(self) -> None:
        """Tell ThingsBoard what runs now (``current_sw_title`` / ``current_sw_version``):
        after start-up and after the watchdog started a controller, not only on connect."""
        title, version = self.current_software()
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

    # ------------------------------------------------------------ OTA requests

    def handle_attributes(self, payload: object) -> bool:
        """The seed's ``on_msg_check_for_ota_update``: True when it was an OTA notification."""
        message = parse_ota_message(payload)
        if isinstance(message, OtaRequest):
            self.handle_request(message)
        else:
            log.debug("attribute message not acted on: %s", message)
        return is_ota_notification(message)

    def handle_request(
        self, request: OtaRequest, on_progress: ProgressListener | None = None
    ) -> UpdateResult:
        """Decide and act on one OTA request; if an update is running, queue it instead."""
        if request.title is not None and self._settings.sw_title is None:
            self._last_title = request.title
        if not self._lock.acquire(blocking=False):
            return self._defer(request)
        try:
            return self._handle_locked(request, on_progress or _quiet)
        finally:
            self._lock.release()

    def hold_swaps(self) -> None:
        """Shutdown: an update may still finish preparing, but starts no container swap."""
        self._swaps_held = True

    def _exclusive(self, operation: Callable[[], UpdateResult]) -> UpdateResult:
        with self._lock:
            return operation()

    def wait_for_queue(self, timeout: float) -> bool:
        """True once no queued request is waiting or running (tests, embedding products)."""
        return self._queue_idle.wait(timeout)

    def _serve_queue(self) -> None:
        """The drainer thread: waits for the lock, runs the latest queued request, repeats.

        Queued requests run here rather than on whichever thread happens to release the
        lock, so a caller of ``stop_controller`` or of the watchdog never finds itself
        running somebody else's update, and nothing is stranded when a holder fails.
        """
        try:
            while True:
                with self._lock:
                    with self._state_lock:
                        pending, self._pending = self._pending, None
                        if pending is None:
                            self._draining = False
                            self._queue_idle.set()
                            return
                    log.info("running the queued request for %r", pending.version)
                    self._handle_locked(pending, _quiet)
        except Exception:
            log.exception("a queued update crashed")
            with self._state_lock:
                self._draining = False
                self._queue_idle.set()

    def _defer(self, request: OtaRequest) -> UpdateResult:
        with self._state_lock:
            decision = decide_update(
                UpdateContext(
                    request=request,
                    running_version=None,
                    configured_title=self._settings.sw_title,
                    in_flight=self._in_flight or "?",
                )
            )
            if isinstance(decision, Defer):
                replaced = self._pending
                self._pending = request
                if replaced is not None:
                    log.info("request for %r superseded by %r", replaced.version, request.version)
                if not self._draining:
                    self._draining = True
                    self._queue_idle.clear()
                    threading.Thread(
                        target=self._serve_queue, name="teg-ota-queued-update", daemon=True
                    ).start()
                return UpdateResult(Outcome.DEFERRED, version=decision.version.value)
        if isinstance(decision, Reject):
            self._report_alone(OtaState.FAILED, decision.error)
            return UpdateResult(Outcome.FAILED, error=decision.error)
        reason = decision.reason if isinstance(decision, Ignore) else str(decision)
        return UpdateResult(Outcome.IGNORED, error=reason)

    def _handle_locked(self, request: OtaRequest, on_progress: ProgressListener) -> UpdateResult:
        if self._store.journal() is not None:
            # An interrupted update (its recovery waited for the engine) comes first: a
            # new update would overwrite its journal and swap over an unknown state.
            self._recover_current()
            if self._store.journal() is not None:
                error = "an interrupted update is still being recovered; try again later"
                return UpdateResult(Outcome.IGNORED, request.version, None, error)
        try:
            state = self._runtime.controller_state()
        except RuntimeUnavailable as exc:
            error = f"update to {request.version!r} not started: {exc}"
            self._report_alone(OtaState.FAILED, error)
            return UpdateResult(Outcome.FAILED, version=request.version, error=error)
        running = state.version if state.running else None
        decision = decide_update(
            UpdateContext(
                request=request,
                running_version=running,
                configured_title=self._settings.sw_title,
                failed=self._store.failed(),
            )
        )
        log.info("OTA request for %r: %s", request.version, type(decision).__name__)
        if isinstance(decision, AlreadyRunning):
            failed = self._store.failed()
            if failed is not None and failed.version != decision.version:
                self._store.set_failed(None)
            self._confirm_running(decision.version)
            return UpdateResult(Outcome.ALREADY_RUNNING, decision.version, decision.version)
        if isinstance(decision, Ignore):
            return UpdateResult(Outcome.IGNORED, error=decision.reason, running_version=running)
        if isinstance(decision, RefuseFailed):
            log.warning(
                "not retrying %s, which failed before (%s); assign another version or run "
                "'teg-ota update --force'",
                decision.version,
                decision.previous_error,
            )
            return UpdateResult(Outcome.REFUSED, decision.version, running, decision.previous_error)
        if isinstance(decision, Reject):
            self._report_alone(OtaState.FAILED, decision.error, running)
            return UpdateResult(Outcome.FAILED, request.version, running, decision.error)
        if isinstance(decision, StartUpdate):
            if decision.clears_failed:
                self._store.set_failed(None)
            return self._update(decision.version, state, on_progress)
        raise AssertionError(f"unhandled decision {decision!r}")  # pragma: no cover

    # --------------------------------------------------------- direct commands

    def start_controller(
        self,
        version: str,
        *,
        force: bool = False,
        on_progress: ProgressListener | None = None,
    ) -> UpdateResult:
        """Update to ``version`` now (CLI, library). ``force`` clears a remembered failure:
        the explicit operator command the decision table speaks of."""
        if force:
            failed = self._store.failed()
            if failed is not None and failed.version == _normalised(version):
                self._store.set_failed(None)
        request = OtaRequest(version=version, title=self._settings.sw_title)
        return self._exclusive(lambda: self._handle_locked(request, on_progress or _quiet))

    def start_controller_safely(
        self, version: str, on_progress: ProgressListener | None = None
    ) -> UpdateResult:
        """Never raises: an unexpected error is logged, recovered from, and reported."""
        try:
            return self.start_controller(version, on_progress=on_progress)
        except Exception as exc:
            log.exception("unexpected error while starting controller %s", version)
            try:
                self.recover()
            except Exception:
                log.exception("recovery after the unexpected error failed too")
            return UpdateResult(Outcome.FAILED, version=version, error=f"internal error: {exc}")

    def launch(self, version: str) -> UpdateResult:
        """(Re)start ``version`` when nothing runs: straight from its image when it exists,
        else through the full safe update (which builds it). Used by the watchdog and at
        start-up; never raises."""
        try:
            parsed = parse_version(version)
            tag = image_tag(self._settings.image_prefix, parsed)

            def restart() -> UpdateResult | None:
                state = self._runtime.controller_state()
                if state.running:
                    return UpdateResult(Outcome.ALREADY_RUNNING, state.version, state.version)
                if not self._start_image(parsed, tag):
                    return None
                self._store.set_last_launched(parsed.value)
                log.info("controller %s started", parsed)
                return UpdateResult(Outcome.UPDATED, parsed.value, parsed.value)

            with self._lock:
                restarted = restart()
            if restarted is not None:
                if restarted.outcome is Outcome.UPDATED:
                    self.report_current_software()
                return restarted
            return self.start_controller_safely(version)
        except (InvalidVersion, ContainerRuntimeError, VersionStoreError) as exc:
            log.error("could not start controller %s: %s", version, exc)
            return UpdateResult(Outcome.FAILED, version=version, error=str(exc))

    def stop_controller(self) -> None:
        """The seed's ``stop_controller``: remember the running version, then stop it."""

        def stop() -> UpdateResult:
            state = self._runtime.controller_state()
            if state.running and state.version:
                self._store.set_last_launched(state.version)
            self._runtime.stop_controller(self._settings.stop_grace_s)
            return UpdateResult(Outcome.IGNORED, state.version)

        self._exclusive(stop)

    def rollback(self) -> UpdateResult:
        """Operator command: back to the known-good version, or, when that is what runs
        (the usual case after a successful update), to the one known good before it."""
        target = self._store.known_good()
        try:
            running = self._runtime.controller_state()
        except ContainerRuntimeError as exc:
            return UpdateResult(Outcome.FAILED, error=str(exc))
        if target is None or (running.running and running.version == target):
            target = self._store.previous_known_good()
        if target is None:
            return UpdateResult(Outcome.FAILED, error="no earlier known-good version recorded")
        return self.start_controller(target, force=True)

    # ----------------------------------------------------------------- updates

    def _update(
        self, version: Version, state: ControllerState, on_progress: ProgressListener
    ) -> UpdateResult:
        previous = _normalised(state.version) if state.running else None
        if previous is None:
            # Nothing runs, or a controller whose version cannot be told: roll back to what
            # the store knows rather than to nothing.
            previous = self._fallback_previous()
        if previous == version.value:
            previous = None  # (re)installing the recorded version: nothing older to go back to
        update = _Update(
            version=version,
            tag=image_tag(self._settings.image_prefix, version),
            previous=previous,
            old_running=state.running,
            journal=UpdateJournal(
                target=version.value,
                previous=previous,
                phase=JournalPhase.PREPARING,
                started_at=self._clock.now(),
            ),
            progress=OtaProgress(),
            on_progress=on_progress,
        )
        with self._state_lock:
            self._in_flight = version.value
        try:
            return self._run(update)
        finally:
            with self._state_lock:
                self._in_flight = None

    def _run(self, update: _Update) -> UpdateResult:
        try:
            self._journal(update, JournalPhase.PREPARING)
            self._report(update, OtaState.DOWNLOADING)
            commit = self._prepare_image(update)
            self._report(update, OtaState.DOWNLOADED)
            self._verify(update, commit)
            self._report(update, OtaState.VERIFIED)
            if self._swaps_held:
                # Shutting down: do not start a swap the process may not live to finish.
                # The journal stays at PREPARING; the next start reports and retries.
                log.warning("not swapping to %s: teg-ota is stopping", update.version)
                return UpdateResult(
                    Outcome.FAILED,
                    update.version.value,
                    update.previous,
                    "abandoned before the swap: teg-ota stopped",
                )
            self._journal(update, JournalPhase.SWAPPING, commit=commit)
        except Exception as exc:
            if not isinstance(exc, SourceRepoError | ContainerRuntimeError | UpdateFailed):
                log.exception("unexpected error while preparing %s", update.version)
            return self._fail_before_swap(update, exc)
        self._report(update, OtaState.UPDATING)
        try:
            if update.old_running:
                self._runtime.stop_controller(self._settings.stop_grace_s)
            self._runtime.run_controller(update.tag, self._labels(update.version, commit))
            started = self._runtime.controller_state().started_at_ms
            self._journal(update, JournalPhase.HEALTH_CHECK, new_started_at_ms=started)
            self._health_gate(update, self._settings.health_grace_s)
        except RuntimeUnavailable as exc:
            # Nothing is known without the engine (the new controller may be fine). The
            # journal stays at SWAPPING / HEALTH_CHECK and recovery decides once it is back.
            log.error("the engine went away while swapping to %s: %s", update.version, exc)
            return UpdateResult(Outcome.FAILED, update.version.value, None, str(exc))
        except Exception as exc:
            if not isinstance(exc, ContainerRuntimeError | HealthCheckFailed):
                log.exception("unexpected error while swapping to %s", update.version)
            return self._roll_back(update, str(exc))
        return self._commit(update)

    def _prepare_image(self, update: _Update) -> str:
        version, tag = update.version, update.tag
        labels = self._runtime.image_labels(tag)
        cached_commit = labels.get(COMMIT_LABEL) if labels is not None else None
        _notify(update.on_progress, f"[{OtaState.DOWNLOADING}] fetching the controller repository")
        try:
            self._repo.fetch()
        except FetchFailed as exc:
            if cached_commit is None:
                raise
            log.warning("fetch failed (%s); using the cached image %s", exc, tag)
            return cached_commit
        commit = self._repo.resolve(version.value)
        if cached_commit == commit:
            _notify(update.on_progress, f"[{OtaState.DOWNLOADING}] image {tag} already built")
            return commit
        free = self._runtime.free_disk_bytes()
        if free < self._settings.min_free_disk_bytes:
            raise DiskSpaceLow(
                f"only {free // 2**20} MiB free for building images; at least "
                f"{self._settings.min_free_disk_bytes // 2**20} MiB are required"
            )
        self._repo.reset_to(commit)
        _notify(update.on_progress, f"[{OtaState.DOWNLOADING}] building {tag} from {commit[:12]}")
        self._runtime.build_image(
            self._repo.worktree,
            tag,
            self._labels(version, commit),
            lambda line: _notify(update.on_progress, line),
        )
        return commit

    def _verify(self, update: _Update, commit: str) -> None:
        labels = self._runtime.image_labels(update.tag)
        if labels is None:
            raise VerificationFailed(f"image {update.tag} is missing after the build")
        built = labels.get(COMMIT_LABEL)
        if built != commit:
            raise VerificationFailed(
                f"image {update.tag} carries commit {built or 'none'}, but "
                f"{update.version} resolves to {commit}"
            )
        if update.version.is_commit and commit != update.version.value:
            raise VerificationFailed(f"{update.version} resolved to another commit {commit}")

    def _health_gate(self, update: _Update, grace_s: float) -> None:
        exit_ = self._runtime.wait_for_exit(max(grace_s, 0.0))
        if exit_ is not None:
            raise HealthCheckFailed(
                f"{update.version} {exit_.describe()} within {self._settings.health_grace_s:g} s"
            )
        deadline = self._clock.monotonic() + self._settings.health_timeout_s
        while True:
            state = self._runtime.controller_state()
            if not state.running or state.version != update.version.value:
                raise HealthCheckFailed(f"{update.version} is no longer running")
            if state.health is Health.UNHEALTHY:
                raise HealthCheckFailed(f"{update.version} turned unhealthy")
            if state.health is not Health.STARTING:
                return
            remaining = deadline - self._clock.monotonic()
            if remaining <= 0:
                raise HealthCheckFailed(
                    f"{update.version} did not report healthy within "
                    f"{self._settings.health_grace_s + self._settings.health_timeout_s:g} s"
                )
            exit_ = self._runtime.wait_for_exit(min(remaining, _HEALTH_POLL_S))
            if exit_ is not None:
                raise HealthCheckFailed(f"{update.version} {exit_.describe()} while starting")

    def _commit(self, update: _Update) -> UpdateResult:
        version = update.version.value
        try:
            self._journal(update, JournalPhase.COMMITTING)
            self._store.set_last_launched(version)
            self._store.set_known_good(version)
            self._store.set_failed(None)
        except VersionStoreError as exc:
            # The new controller passed its health gate and runs: that is the truth to report.
            log.error("%s runs, but recording it failed: %s", version, exc)
        self._report(update, OtaState.UPDATED, current=version)
        self._confirmed = version
        self._clear_journal()
        self._collect_garbage(version, update.previous)
        return UpdateResult(Outcome.UPDATED, version, version)

    def _fail_before_swap(self, update: _Update, exc: Exception) -> UpdateResult:
        running = update.previous if update.old_running else None
        kept = f"; {running} kept running" if running else ""
        error = f"update to {update.version} failed: {exc}{kept}"
        log.error("%s", error)
        if not isinstance(exc, _TRANSIENT):
            self._remember_failure(update.version.value, error)
        self._report(update, OtaState.FAILED, error=error, current=running)
        self._clear_journal()
        return UpdateResult(Outcome.FAILED, update.version.value, running, error)

    def _roll_back(self, update: _Update, cause: str, *, at_fault: bool = True) -> UpdateResult:
        """Restore the previous version and report FAILED. ``at_fault``: the failure was
        observed against the new version (exit, unhealthy, start error), so it is
        remembered and not retried; an interruption is not."""
        try:
            self._journal(update, JournalPhase.ROLLING_BACK, error=cause, version_at_fault=at_fault)
        except VersionStoreError as exc:
            log.error("could not journal the rollback (rolling back anyway): %s", exc)
        try:
            running = self._restore_previous(update.previous, update.version.value)
        except RuntimeUnavailable as exc:
            # Nothing can be known or done without the engine. The journal stays at
            # ROLLING_BACK; recovery finishes the rollback and reports once it is back.
            log.error("rollback of %s waits for the container engine: %s", update.version, exc)
            return UpdateResult(Outcome.FAILED, update.version.value, None, str(exc))
        if running is not None:
            error = (
                f"update from {update.previous} to {update.version} failed: {cause}; "
                f"rolled back to {running}"
            )
        else:
            error = (
                f"update to {update.version} failed: {cause}; no previous version could be started"
            )
        log.error("%s", error)
        if at_fault:
            self._remember_failure(update.version.value, error)
        self._report(update, OtaState.FAILED, error=error, current=running or "")
        self._clear_journal()
        outcome = Outcome.ROLLED_BACK if running is not None else Outcome.FAILED
        return UpdateResult(outcome, update.version.value, running, error)

    def _restore_previous(self, previous: str | None, failed: str) -> str | None:
        """Stop whatever runs unless it is ``previous``; start ``previous``. Best effort:
        returns the version running afterwards, or ``None``."""
        try:
            state = self._runtime.controller_state()
            if state.running and previous is not None and state.version == previous:
                return previous
            if state.running:
                self._runtime.stop_controller(self._settings.stop_grace_s)
            if previous is None:
                return None
            parsed = parse_version(previous)
            tag = image_tag(self._settings.image_prefix, parsed)
            if not self._start_image(parsed, tag):
                log.warning("image of %s is gone; rebuilding it for the rollback", previous)
                rebuild = _Update(
                    version=parsed,
                    tag=tag,
                    previous=None,
                    old_running=False,
                    journal=UpdateJournal(previous, None, JournalPhase.ROLLING_BACK, 0.0),
                    progress=OtaProgress(),
                    on_progress=_quiet,
                )
                commit = self._prepare_image(rebuild)
                self._runtime.run_controller(tag, self._labels(parsed, commit))
            self._store.set_last_launched(previous)
            return previous
        except RuntimeUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - best effort: report what runs afterwards
            log.error("rollback from %s to %s failed: %s", failed, previous, exc)
            return None

    def _start_image(self, version: Version, tag: str) -> bool:
        """Run ``tag`` if the image exists (False when it does not)."""
        labels = self._runtime.image_labels(tag)
        if labels is None:
            return False
        self._runtime.run_controller(tag, self._labels(version, labels.get(COMMIT_LABEL)))
        return True

    # ---------------------------------------------------------------- recovery

    def recover(self) -> UpdateResult:
        """Finish or undo an update a crash or power cut interrupted (read from the journal).

        PREPARING: the old controller was never stopped: make sure it runs, report FAILED
        (not remembered as failed: the re-sent assignment retries it).
        SWAPPING / ROLLING_BACK: unknown mid-swap state: restore the previous version.
        HEALTH_CHECK: the new controller keeps its chance if it still runs (the rest of the
        grace period is waited out); otherwise roll back.
        COMMITTING: the health gate had passed: finish recording success.
        """
        journal = self._store.journal()
        if journal is None:
            return UpdateResult(Outcome.NOTHING_TO_RECOVER)
        try:
            self._runtime.controller_state()
        except RuntimeUnavailable as exc:
            # Without the engine nothing is known: keep the journal, try again later.
            log.error("recovery of the update to %s waits for the engine: %s", journal.target, exc)
            return UpdateResult(Outcome.FAILED, journal.target, None, str(exc))
        try:
            return self._exclusive(self._recover_current)
        except RuntimeUnavailable as exc:
            log.error("recovery of the update to %s waits for the engine: %s", journal.target, exc)
            return UpdateResult(Outcome.FAILED, journal.target, None, str(exc))
        except Exception as exc:
            # A journal that cannot be recovered must not block the watchdog for ever: the
            # controller would then never be restarted. Log it, drop it, let the watchdog run.
            log.exception(
                "recovery of the update to %s failed; dropping the journal", journal.target
            )
            self._clear_journal()
            return UpdateResult(Outcome.FAILED, journal.target, None, f"recovery failed: {exc}")

    def _recover_current(self) -> UpdateResult:
        """Recover the journal as it is now, read under the update lock (an update that ran
        while we waited for the lock may have replaced or cleared it)."""
        journal = self._store.journal()
        if journal is None:
            return UpdateResult(Outcome.NOTHING_TO_RECOVER)
        if journal.reported is not None and journal.reported.is_terminal:
            # The update had already ended (its terminal state is out); only the clean-up
            # was interrupted.
            self._clear_journal()
            return UpdateResult(Outcome.NOTHING_TO_RECOVER, journal.target)
        return self._recover(journal)

    def _recover(self, journal: UpdateJournal) -> UpdateResult:
        log.warning("recovering an update interrupted in phase %s: %s", journal.phase, journal)
        try:
            version = parse_version(journal.target)
        except InvalidVersion:
            self._store.clear_journal()
            return UpdateResult(Outcome.NOTHING_TO_RECOVER, error="journal named no valid version")
        update = _Update(
            version=version,
            tag=image_tag(self._settings.image_prefix, version),
            previous=journal.previous,
            old_running=False,
            journal=journal,
            progress=OtaProgress.resume(journal.reported),
            on_progress=_quiet,
        )
        phase = journal.phase
        if phase is JournalPhase.COMMITTING:
            return self._finish_commit(update)
        if phase is JournalPhase.HEALTH_CHECK:
            return self._resume_health_gate(update)
        if phase is JournalPhase.PREPARING:
            state = self._runtime.controller_state()
            if state.running:
                running = state.version  # never touched: leave it as it is
            else:
                running = self._restore_previous(journal.previous, journal.target)
            kept = f"; {running} kept running" if running else ""
            error = f"update to {version} was interrupted while preparing (gateway restarted){kept}"
            # Not remembered as failed: the old controller was never touched and the version
            # is not to blame, so the assignment ThingsBoard re-sends after the reconnect
            # starts a fresh attempt.
            self._report(update, OtaState.FAILED, error=error, current=running or "")
            self._clear_journal()
            return UpdateResult(Outcome.FAILED, version.value, running, error)
        if phase is JournalPhase.ROLLING_BACK:
            cause = journal.error or "interrupted while rolling back (gateway restarted)"
            return self._roll_back(update, cause, at_fault=journal.version_at_fault)
        # SWAPPING: interrupted (power cut, engine restart), nothing observed against the
        # version: roll back, but let the re-sent assignment try it again.
        return self._roll_back(
            update, "interrupted during the swap (gateway restarted)", at_fault=False
        )

    def _finish_commit(self, update: _Update) -> UpdateResult:
        """The health gate had passed, so the update succeeded and UPDATED may already have
        been sent: never roll back from here (a FAILED after UPDATED is the contradiction
        the dashboard must not show). A controller a power cut stopped is started again;
        if that fails, the watchdog keeps trying with backoff."""
        try:
            state = self._runtime.controller_state()
            if not (state.running and state.version == update.version.value):
                if state.running:
                    self._runtime.stop_controller(self._settings.stop_grace_s)
                self._runtime.run_controller(
                    update.tag, self._labels(update.version, update.journal.commit)
                )
        except ContainerRuntimeError as exc:
            log.error("%s passed its health gate but does not start again: %s", update.version, exc)
        return self._commit(update)

    def _resume_health_gate(self, update: _Update) -> UpdateResult:
        try:
            state = self._runtime.controller_state()
            if not state.running or state.version != update.version.value:
                # A restart of the gateway or of the engine stops containers: that says
                # nothing against the version, which the re-sent assignment may retry.
                return self._roll_back(
                    update, "the new controller was not running after a restart", at_fault=False
                )
            started_ms = state.started_at_ms or update.journal.new_started_at_ms
            up_s = (self._clock.now() * 1000 - started_ms) / 1000 if started_ms else 0.0
            self._health_gate(update, self._settings.health_grace_s - up_s)
        except RuntimeUnavailable:
            raise  # recovery keeps the journal and tries again when the engine is back
        except (ContainerRuntimeError, HealthCheckFailed) as exc:
            return self._roll_back(update, str(exc))
        return self._commit(update)

    # ----------------------------------------------------------------- helpers

    def _fallback_previous(self) -> str | None:
        return self._store.known_good() or self._store.last_launched()

    def _labels(self, version: Version, commit: str | None) -> dict[str, str]:
        labels = {VERSION_LABEL: version.value}
        if commit is not None:
            labels[COMMIT_LABEL] = commit
        return labels

    def _journal(self, update: _Update, phase: JournalPhase, **changes: object) -> None:
        update.journal = update.journal.at(phase, reported=update.progress.last, **changes)
        self._store.write_journal(update.journal)

    def _clear_journal(self) -> None:
        try:
            self._store.clear_journal()
        except VersionStoreError as exc:
            log.error("could not clear the update journal: %s", exc)

    def _remember_failure(self, version: str, error: str) -> None:
        try:
            self._store.set_failed(FailedVersion(version, error))
        except VersionStoreError as exc:
            log.error("could not remember the failed version %s: %s", version, exc)

    def _report(
        self,
        update: _Update,
        state: OtaState,
        *,
        error: str | None = None,
        current: str | None = None,
    ) -> None:
        update.progress.advance(state)
        if state is OtaState.FAILED:
            self._confirmed = None
        _notify(update.on_progress, f"[{state}] {error or update.version}")
        with_current = state.is_terminal
        self._publish(
            OtaReport(
                state=state,
                error=error,
                current_title=self.current_title() if with_current else None,
                current_version=current if with_current else None,
            )
        )

    def _report_alone(self, state: OtaState, error: str, current: str | None = None) -> None:
        """A terminal state for a request that never became an update (rejected up front)."""
        self._confirmed = None
        self._publish(OtaReport(state, error, self.current_title(), current))

    def _confirm_running(self, version: str) -> None:
        """UPDATED for the version that runs, once per process: ThingsBoard re-sends the
        assignment on every reconnect, the dashboard needs to hear it only once."""
        if self._confirmed == version:
            return
        self._confirmed = version
        self._publish(OtaReport(OtaState.UPDATED, None, self.current_title(), version))

    def _publish(self, report: OtaReport) -> None:
        try:
            self._telemetry.publish_ota_state(report)
        except TelemetryError as exc:
            log.error("could not queue OTA state %s: %s", report.state, exc)

    def _collect_garbage(self, current: str, previous: str | None) -> None:
        """Prune stopped containers; keep the current, previous and N newest other images."""
        try:
            self._runtime.prune_stopped_containers()
            keep = {image_tag(self._settings.image_prefix, parse_version(current))}
            for version in (previous, self._store.known_good()):
                if version is not None:
                    keep.add(image_tag(self._settings.image_prefix, parse_version(version)))
            images = sorted(
                self._runtime.list_controller_images(), key=lambda i: i.created_at, reverse=True
            )
            others = [image for image in images if image.tag not in keep]
            for image in others[self._settings.keep_older_images :]:
                log.info("removing old controller image %s", image.tag)
                self._runtime.remove_image(image.tag)
        except (ContainerRuntimeError, InvalidVersion, VersionStoreError) as exc:
            log.warning("housekeeping after the update failed: %s", exc)
