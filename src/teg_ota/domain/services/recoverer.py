"""Resuming an update a crash or power cut interrupted: the recovery table applied.

``core.recovery.resume`` says what to do with the journal and what the engine shows; this
drives the answer through the same :class:`UpdateFlow` loop as an update, so a resumed
rollback is the table's rollback, not a second implementation of it.
"""

from __future__ import annotations

import logging

from teg_ota.domain.core import recovery
from teg_ota.domain.model.errors import (
    ContainerRuntimeError,
    RuntimeUnavailable,
    VersionStoreError,
)
from teg_ota.domain.model.ota_state import OtaProgress
from teg_ota.domain.model.outcome import Outcome, UpdateResult
from teg_ota.domain.model.package import PackageRef
from teg_ota.domain.model.settings import UpdateSettings
from teg_ota.domain.model.versions import parse_version
from teg_ota.domain.services.update_flow import UpdateFlow, UpdateRun
from teg_ota.ports.clock import Clock
from teg_ota.ports.container_runtime import ContainerRuntime
from teg_ota.ports.version_store import VersionStore

log = logging.getLogger(__name__)


class Recoverer:
    def __init__(
        self,
        runtime: ContainerRuntime,
        store: VersionStore,
        flow: UpdateFlow,
        clock: Clock,
        settings: UpdateSettings,
    ) -> None:
        self._runtime = runtime
        self._store = store
        self._flow = flow
        self._clock = clock
        self._settings = settings
        self.in_flight: str | None = None
        """The target being recovered now (the service is busy meanwhile)."""

    def recover(self) -> UpdateResult:
        """Finish or undo an update a crash or power cut interrupted (the recovery table
        in docs/architecture.md, one row per case of ``core.recovery.resume``)."""
        journal = self._store.journal()
        if journal is None:
            return UpdateResult(Outcome.NOTHING_TO_RECOVER)
        try:
            return self.recover_current()
        except RuntimeUnavailable as exc:
            log.error("recovery of the update to %s waits for the engine: %s", journal.target, exc)
            return UpdateResult(Outcome.FAILED, journal.target, None, str(exc))
        except Exception as exc:
            # A journal that cannot be recovered must not block the watchdog for ever: the
            # controller would then never be restarted. Log it, drop it, let the watchdog run.
            log.exception("recovery of the update to %s failed; dropping it", journal.target)
            try:
                self._store.clear_journal()
            except VersionStoreError as clear_error:
                log.error("could not clear the update journal: %s", clear_error)
            return UpdateResult(Outcome.FAILED, journal.target, None, f"recovery failed: {exc}")

    def _interruptions_before(self, target: str) -> int:
        """The loop guard's count of ``target`` so far (unreadable: none, logged)."""
        try:
            record = self._store.interrupted_attempts()
        except VersionStoreError as exc:
            log.error("cannot read how often %s was interrupted: %s", target, exc)
            return 0
        return recovery.previous_interruptions(record, target)

    def recover_current(self) -> UpdateResult:
        """Recover the journal as it is now (an update that ran meanwhile may have replaced
        or cleared it). Raises :class:`RuntimeUnavailable`: the journal is kept."""
        journal = self._store.journal()
        if journal is None:
            return UpdateResult(Outcome.NOTHING_TO_RECOVER)
        # A swap interrupted after it created (or even started) the new container under its
        # temporary name: the recovery table looks at the controller's name alone, and what
        # it starts must be the one controller, so the left-over goes first.
        discard = getattr(self._runtime, "discard_prepared", None)  # a runtime from before
        try:  # ... issue 14 has no temporary container to leave behind
            if discard is not None:
                discard()
        except ContainerRuntimeError as exc:
            # Not done: the rows below must not see two controllers. Kept for the next try.
            raise RuntimeUnavailable(f"cannot remove the left-over next controller: {exc}") from exc
        engine = self._runtime.controller_state()
        step = recovery.resume(
            journal,
            engine,
            interrupted=self._interruptions_before(journal.target),
            limit=self._settings.max_interrupted_attempts,
        )
        if step.stop is not None and step.stop.outcome is Outcome.NOTHING_TO_RECOVER:
            # Nothing to drive (the target may not even be a version): only the clean-up.
            try:
                self._store.clear_journal()
            except VersionStoreError as exc:
                log.error("could not clear the update journal: %s", exc)
            return UpdateResult(Outcome.NOTHING_TO_RECOVER, journal.target, None, step.stop.error)
        log.warning("recovering an update interrupted in phase %s: %s", journal.phase, journal)
        version = parse_version(journal.target)
        grace = recovery.remaining_grace_s(
            self._settings.health_grace_s,
            engine.started_at_ms or journal.new_started_at_ms,
            self._clock.now() * 1000,
        )
        run = UpdateRun(
            package=PackageRef(version),
            journal=journal,
            old_running=False,
            grace_s=grace,
            progress=OtaProgress.resume(journal.reported),
            digest=journal.commit,
        )
        self.in_flight = version.value
        try:
            # An engine lost again ends in FAILED with the journal kept: tried again later.
            return self._flow.drive(run, step)
        finally:
            self.in_flight = None
