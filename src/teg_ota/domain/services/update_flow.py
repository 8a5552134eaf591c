"""The thin shell around the phase table: one short function per phase and one loop.

Each phase function does the phase's work through the ports and returns a result value;
:func:`teg_ota.domain.core.phases.after` says what follows; :meth:`UpdateFlow.drive`
applies the effects in order and goes on. Exceptions become results in exactly one place
(:meth:`UpdateFlow._perform`), classified by ``core.failures``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from teg_ota.domain.core import output_tail, phases
from teg_ota.domain.core.failures import Blame, blame, engine_lost
from teg_ota.domain.core.phases import (
    ClearJournal,
    CollectImages,
    Done,
    Effect,
    EngineLost,
    Facts,
    Failed,
    Held,
    NoteInterruption,
    Phase,
    RecordSuccess,
    RememberFailure,
    Report,
    Result,
    Step,
    WriteJournal,
)
from teg_ota.domain.core.recovery import remaining_grace_s
from teg_ota.domain.model.controller import COMMIT_LABEL, Health
from teg_ota.domain.model.errors import (
    ContainerRuntimeError,
    HealthCheckFailed,
    InvalidVersion,
    PackageSourceError,
    RuntimeUnavailable,
    UpdateFailed,
    VerificationFailed,
    VersionStoreError,
)
from teg_ota.domain.model.journal import FailedVersion, UpdateJournal
from teg_ota.domain.model.ota_state import OtaProgress
from teg_ota.domain.model.outcome import UpdateResult
from teg_ota.domain.model.package import PackageRef
from teg_ota.domain.model.settings import UpdateSettings
from teg_ota.domain.model.versions import Version, parse_version
from teg_ota.domain.services.image_maker import ImageMaker, labels_for
from teg_ota.domain.services.reporting import ProgressListener, Reporter, quiet
from teg_ota.domain.services.success_record import guard, note_interruption, record_success
from teg_ota.domain.services.swap_gate import SwapGate
from teg_ota.ports.clock import Clock
from teg_ota.ports.container_runtime import ContainerRuntime
from teg_ota.ports.version_store import VersionStore

log = logging.getLogger(__name__)

_HEALTH_POLL_S = 5.0
_EXPECTED = (ContainerRuntimeError, PackageSourceError, UpdateFailed, VersionStoreError)


@dataclass
class UpdateRun:
    """One update in progress (or being recovered)."""

    package: PackageRef
    journal: UpdateJournal
    old_running: bool
    grace_s: float
    progress: OtaProgress = field(default_factory=OtaProgress)
    on_progress: ProgressListener = quiet
    digest: str | None = None
    publish: bool = True
    """False when nothing was assigned (a start-up launch, an operator's rollback): the
    states go to the listener only, not to ThingsBoard."""
    gated: bool = True
    """False for the operator's own commands (a rollback, a launch): the swap does not wait
    for the controller's update lock or a maintenance window."""
    swapped: tuple[float, int | None] | None = None
    """Monotonic time the swap call began and the new controller's start (engine time, ms):
    what the health grace counts from (``None``: a recovered update, its grace what was left)."""
    seen_healthy: bool = False
    """The health gate just saw the new controller run healthy: COMMITTING need not look."""

    @property
    def target(self) -> str:
        return self.package.version.value


class UpdateFlow:
    def __init__(
        self,
        runtime: ContainerRuntime,
        images: ImageMaker,
        store: VersionStore,
        reporter: Reporter,
        clock: Clock,
        settings: UpdateSettings,
        gate: SwapGate | None = None,
    ) -> None:
        self._runtime = runtime
        self._images = images
        self._store = store
        self._reporter = reporter
        self._clock = clock
        self._settings = settings
        self.swaps_held = False
        self.gate = gate or SwapGate(None, runtime, clock, reporter, settings)
        self.gate.held = lambda: self.swaps_held
        images.fetch.stop_retrying = lambda t: self.gate.interrupted(t)  # noqa: PLW0108 - set later

    # ------------------------------------------------------------------ the loop

    def drive(self, run: UpdateRun, step: Step) -> UpdateResult:
        try:
            return self._drive(run, step)
        finally:
            # Taken at the end of WAITING and normally let go after SWAPPING started the
            # new container; a failure in between (the SWAPPING journal write, an error)
            # must not leave the controller unable to take its own lock.
            self.gate.release()

    def _drive(self, run: UpdateRun, step: Step) -> UpdateResult:
        phase = Phase.PREPARING
        while True:
            failure = self._apply(step.effects, run)
            if failure is not None:
                step = phases.after(phase, Failed(failure, Blame.GATEWAY), self._facts(run))
                continue
            if step.stop is not None:
                stop = step.stop
                return UpdateResult(stop.outcome, run.target, stop.running, stop.error)
            if step.next is None:
                raise ValueError("a step names neither a next phase nor a stop")
            phase = step.next
            step = phases.after(phase, self._perform(phase, run), self._facts(run))

    def _facts(self, run: UpdateRun) -> Facts:
        return Facts(run.journal, run.old_running)

    def _perform(self, phase: Phase, run: UpdateRun) -> Result:
        action = {
            Phase.PREPARING: self._prepare,
            Phase.VERIFYING: self._verify,
            Phase.WAITING: self._wait,
            Phase.SWAPPING: self._swap,
            Phase.HEALTH_CHECK: self._health_check,
            Phase.COMMITTING: self._commit,
            Phase.ROLLING_BACK: self._roll_back,
        }[phase]
        try:
            return action(run)
        except Exception as exc:
            if not isinstance(exc, _EXPECTED):
                log.exception("unexpected error in phase %s of the update to %s", phase, run.target)
            if engine_lost(exc):
                log.error("the engine went away in phase %s of %s: %s", phase, run.target, exc)
                return EngineLost(str(exc))
            return Failed(str(exc), blame(exc))

    # ---------------------------------------------------------------- the phases

    def recorded_commit(self, version: str) -> str | None:
        """What ``version`` named at its first success (unknown when the store fails)."""
        try:
            return self._store.recorded_commit(version)
        except VersionStoreError as exc:
            log.error("cannot read what %s named when installed: %s", version, exc)
            return None

    def record_running_commit(self, version: str, commit: str | None) -> None:
        """A tag confirmed as running with nothing recorded yet (installed by an older
        teg-ota): record what it runs as, so a later move of the tag is noticed."""
        if commit is None or self.recorded_commit(version) is not None:
            return
        try:
            if parse_version(version).is_commit:
                return
            self._store.record_commit(version, commit)
        except (InvalidVersion, VersionStoreError) as exc:
            log.warning("could not record what %s runs as: %s", version, exc)

    def _prepare(self, run: UpdateRun) -> Result:
        recorded = self.recorded_commit(run.target)
        run.digest = self._images.make(run.package, run.on_progress, recorded=recorded)
        return Done(digest=run.digest)

    def _verify(self, run: UpdateRun) -> Result:
        if run.digest is None:
            raise VerificationFailed(f"{run.target} was not prepared before verification")
        self._images.verify(run.package.version, run.digest)
        if self.swaps_held:
            # Shutting down: do not start a swap the process may not live to finish. The
            # journal stays at PREPARING; the next start reports and retries.
            log.warning("not swapping to %s: teg-ota is stopping", run.target)
            return Held()
        return Done(digest=run.digest)

    def _wait(self, run: UpdateRun) -> Result:
        return self.gate.wait(
            run.target,
            run.digest,
            old_running=run.old_running and run.gated,
            publish=run.publish,
            listener=run.on_progress,
        )

    def _swap(self, run: UpdateRun) -> Result:
        try:
            began = self._clock.monotonic()
            self._put(run.package.version, run.digest, replace=run.old_running)
            took = self._clock.monotonic() - began
        finally:
            self.gate.release()  # held since WAITING: the new controller may take it now
        started_at_ms = self._runtime.controller_state().started_at_ms
        run.swapped = (self._clock.monotonic() - took, started_at_ms)
        return Done(started_at_ms=started_at_ms)

    def _grace_left(self, run: UpdateRun) -> float:
        """The grace runs from the new controller's start, not from the end of the swap call
        (the old one made way and the new one took its name after the start) nor from the
        journal write after it; the credit is never more than the monotonic time since the
        call began, so a clock step cannot shorten the grace beyond that."""
        if run.swapped is None:
            return max(run.grace_s, 0.0)
        began, started_at_ms = run.swapped
        left = remaining_grace_s(run.grace_s, started_at_ms, self._clock.now() * 1000)
        since = max(self._clock.monotonic() - began, 0.0)
        return max(run.grace_s - min(run.grace_s - left, since), 0.0)

    def _health_check(self, run: UpdateRun) -> Result:
        version, grace = run.target, self._settings.health_grace_s
        exit_ = self._runtime.wait_for_exit(self._grace_left(run))
        if exit_ is not None:
            raise self._gate_failed(f"{version} {exit_.describe()} within {grace:g} s")
        deadline = self._clock.monotonic() + self._settings.health_timeout_s
        while True:
            state = self._runtime.controller_state()
            if not state.running or state.version != version:
                raise self._gate_failed(f"{version} is no longer running")
            if state.health is Health.UNHEALTHY:
                raise self._gate_failed(f"{version} turned unhealthy")
            if state.health is not Health.STARTING:
                run.seen_healthy = True
                return Done()
            remaining = deadline - self._clock.monotonic()
            if remaining <= 0:
                total = grace + self._settings.health_timeout_s
                raise self._gate_failed(f"{version} did not report healthy within {total:g} s")
            exit_ = self._runtime.wait_for_exit(min(remaining, _HEALTH_POLL_S))
            if exit_ is not None:
                raise self._gate_failed(f"{version} {exit_.describe()} while starting")

    def _gate_failed(self, reason: str) -> HealthCheckFailed:
        """The health gate's failure, with the end of what the controller printed (it goes
        into ``sw_error``: shortened, control characters stripped). Unreadable output is no
        reason to hide the failure: it is then left out."""
        try:
            lines = self._runtime.last_output(output_tail.SUMMARY_LINES)
        except ContainerRuntimeError as exc:
            log.warning("cannot read the controller's last output (%s): %s", reason, exc)
            lines = ()
        shown = output_tail.summary(lines)
        return HealthCheckFailed(f"{reason}; last output: {shown}" if shown else reason)

    def _commit(self, run: UpdateRun) -> Result:
        """The gate passed: a controller a power cut stopped is started again. If that
        fails the watchdog keeps trying; the update is a success either way."""
        if run.seen_healthy:
            return Done()
        try:
            state = self._runtime.controller_state()
            if not (state.running and state.version == run.target):
                self._put(run.package.version, run.journal.commit, replace=state.running)
        except ContainerRuntimeError as exc:
            log.error("%s passed its health gate but does not start again: %s", run.target, exc)
        return Done()

    def _roll_back(self, run: UpdateRun) -> Result:
        """Stop whatever runs unless it is the previous version; start the previous one
        (rebuilt if its image is gone). Best effort: reports what runs afterwards."""
        previous = run.journal.previous
        try:
            state = self._runtime.controller_state()
            if state.running and previous is not None and state.version == previous:
                return Done(running=previous)
            if previous is None:
                if state.running:
                    self._runtime.stop_controller(self._settings.stop_grace_s)
                return Done(running=None)
            version = parse_version(previous)
            labels = self._runtime.image_labels(self._images.tag(version))
            if labels is None:
                # Rebuilt while whatever runs keeps running: the downtime stays the swap.
                log.warning("image of %s is gone; rebuilding it for the rollback", previous)
                self._images.make(PackageRef(version))
                labels = self._runtime.image_labels(self._images.tag(version)) or {}
            self._put(version, labels.get(COMMIT_LABEL), replace=state.running)
            # It runs: a failed record must not turn that into "nothing could be started".
            self._guard(
                "record the version rolled back to", self._store.set_last_launched, previous
            )
            return Done(running=previous)
        except RuntimeUnavailable as exc:
            # The journal stays at ROLLING_BACK; recovery finishes once the engine is back.
            log.error("rollback of %s waits for the container engine: %s", run.target, exc)
            return EngineLost(str(exc))
        except Exception as exc:  # noqa: BLE001 - best effort: report what runs afterwards
            log.error("rollback from %s to %s failed: %s", run.target, previous, exc)
            return Done(running=None)

    def _put(self, version: Version, commit: str | None, *, replace: bool) -> None:
        """Start ``version``, in place of the running one when ``replace`` (made first)."""
        tag, labels = self._images.tag(version), labels_for(version, commit)
        replace_controller = getattr(self._runtime, "replace_controller", None)
        if replace and replace_controller is not None:
            replace_controller(tag, labels, self._settings.stop_grace_s)
        elif replace:  # a runtime from before issue 14 (an embedding product's own)
            self._runtime.stop_controller(self._settings.stop_grace_s)
            self._runtime.run_controller(tag, labels)
        else:
            self._runtime.run_controller(tag, labels)

    # ---------------------------------------------------------------- the effects

    def _apply(self, effects: tuple[Effect, ...], run: UpdateRun) -> str | None:
        """Apply effects in order; a failed required write stops here and is returned (the
        table then fails the update before the swap, or rolls back at or after it)."""
        for effect in effects:
            match effect:
                case WriteJournal():
                    error = self._write_journal(effect, run)
                    if error is not None and effect.required:
                        return error
                case Report(state=state, error=error, current=current):
                    self._reporter.report(
                        run.progress,
                        state,
                        error=error,
                        current=current,
                        listener=run.on_progress,
                        subject=run.target,
                        publish=run.publish,
                    )
                case RememberFailure(error=error):
                    failed = FailedVersion(run.target, error, self._settings.fingerprint)
                    self._guard("remember the failed version", self._store.set_failed, failed)
                    # An attempt that ran to its verdict ends the streak of interruptions.
                    self._guard(
                        "forget the interrupted attempts",
                        self._store.set_interrupted_attempts,
                        None,
                    )
                case RecordSuccess():
                    error = self._record_success(run)
                    if error is not None:
                        return error
                case NoteInterruption(count=count):
                    self._note_interruption(run, count)
                case ClearJournal():
                    self._guard("clear the update journal", self._store.clear_journal)
                case CollectImages():
                    history = self._store.known_good_history()
                    self._images.collect((run.target, run.journal.previous, *history[:1]))
        return None

    def _write_journal(self, effect: WriteJournal, run: UpdateRun) -> str | None:
        changes = {
            key: value
            for key, value in (
                ("commit", effect.commit),
                ("new_started_at_ms", effect.new_started_at_ms),
                ("error", effect.error),
                ("version_at_fault", effect.version_at_fault),
            )
            if value is not None
        }
        journal = run.journal.at(effect.phase, reported=run.progress.last, **changes)
        run.journal = journal
        try:
            self._store.write_journal(journal)
        except VersionStoreError as exc:
            log.error("could not journal phase %s of %s: %s", effect.phase, run.target, exc)
            return str(exc)
        return None

    def _record_success(self, run: UpdateRun) -> str | None:
        commit = run.journal.commit or run.digest
        names_a_commit = run.package.version.is_commit
        return record_success(self._store, run.target, commit, names_a_commit=names_a_commit)

    def _note_interruption(self, run: UpdateRun, count: int) -> None:
        limit = self._settings.max_interrupted_attempts
        note_interruption(self._store, run.target, count, limit)

    _guard = staticmethod(guard)
