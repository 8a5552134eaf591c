"""The thin shell around the phase table: one short function per phase and one loop.

Each phase function does the phase's work through the ports and returns a result value;
:func:`teg_ota.domain.core.phases.after` says what follows; :meth:`UpdateFlow.drive`
applies the effects in order and goes on. Exceptions become results in exactly one place
(:meth:`UpdateFlow._perform`), classified by ``core.failures``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from teg_ota.domain.core import known_good, output_tail, phases
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
from teg_ota.domain.model.controller import Health
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
from teg_ota.domain.model.journal import FailedVersion, InterruptedAttempts, UpdateJournal
from teg_ota.domain.model.ota_state import OtaProgress
from teg_ota.domain.model.outcome import UpdateResult
from teg_ota.domain.model.package import PackageRef
from teg_ota.domain.model.settings import UpdateSettings
from teg_ota.domain.model.versions import parse_version
from teg_ota.domain.services.image_maker import ImageMaker, labels_for
from teg_ota.domain.services.reporting import ProgressListener, Reporter, quiet
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
            if run.old_running:
                self._runtime.stop_controller(self._settings.stop_grace_s)
            version = run.package.version
            tag = self._images.tag(version)
            self._runtime.run_controller(tag, labels_for(version, run.digest))
        finally:
            self.gate.release()  # held since WAITING: the new controller may take it now
        return Done(started_at_ms=self._runtime.controller_state().started_at_ms)

    def _health_check(self, run: UpdateRun) -> Result:
        version, grace = run.target, self._settings.health_grace_s
        exit_ = self._runtime.wait_for_exit(max(run.grace_s, 0.0))
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
        try:
            state = self._runtime.controller_state()
            if not (state.running and state.version == run.target):
                if state.running:
                    self._runtime.stop_controller(self._settings.stop_grace_s)
                version = run.package.version
                labels = labels_for(version, run.journal.commit)
                self._runtime.run_controller(self._images.tag(version), labels)
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
            if state.running:
                self._runtime.stop_controller(self._settings.stop_grace_s)
            if previous is None:
                return Done(running=None)
            version = parse_version(previous)
            if not self._images.start(version):
                log.warning("image of %s is gone; rebuilding it for the rollback", previous)
                self._images.make(PackageRef(version))
                self._images.start(version)
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
        """``None`` once recorded; else why not (the table then rolls back: a version the
        gateway cannot record as launched is not the one a reboot would start). What a tag
        named is recorded too: the moved-tag policy rests on it."""
        version, commit = run.target, run.journal.commit or run.digest
        try:
            # Already in place (a recovery after UPDATED was out): nothing to write, and a
            # disk that turned read-only since must not undo what was reported.
            if self._store.last_launched() != version:
                self._store.set_last_launched(version)
            history = self._store.known_good_history()
            if known_good.newest(history) != version:
                self._store.set_known_good_history(known_good.after_success(history, version))
        except VersionStoreError as exc:
            log.error("%s passed its health gate, but recording it failed: %s", version, exc)
            return str(exc)
        # Not needed to claim the version: a stale failure record is only cleared, and
        # without the commit record only a later move of the tag goes unnoticed (logged).
        self._guard("forget the failed version", self._store.set_failed, None)
        self._guard("forget the interrupted attempts", self._store.set_interrupted_attempts, None)
        if commit is not None and not run.package.version.is_commit:
            self._guard(f"record what {version} names", self._store.record_commit, version, commit)
        return None

    def _note_interruption(self, run: UpdateRun, count: int) -> None:
        """Best effort: a count the disk refuses only weakens the loop guard (logged)."""
        if count:
            limit = self._settings.max_interrupted_attempts
            log.warning(
                "the swap or health gate of %s was interrupted (%d of %d in a row)",
                run.target,
                count,
                limit,
            )
        record = InterruptedAttempts(run.target, count) if count else None
        self._guard("count the interrupted attempt", self._store.set_interrupted_attempts, record)

    @staticmethod
    def _guard(what: str, action: Callable[..., object], *args: object) -> None:
        try:
            action(*args)
        except VersionStoreError as exc:
            log.error("could not %s: %s", what, exc)
