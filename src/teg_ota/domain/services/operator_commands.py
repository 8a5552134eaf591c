"""The operator's own commands on the update service: update now, launch, stop, roll back.

Split from :mod:`.update_service` (which keeps the OTA requests, the safe update itself and
recovery) as a base class: these commands are thin, each a decision over the same state,
ending in the service's ``handle_request`` or ``_update``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from teg_ota.domain.core import known_good
from teg_ota.domain.core.ota_messages import OtaRequest
from teg_ota.domain.model.controller import ControllerState
from teg_ota.domain.model.errors import ContainerRuntimeError, InvalidVersion, VersionStoreError
from teg_ota.domain.model.journal import FailedVersion
from teg_ota.domain.model.ota_state import OtaState
from teg_ota.domain.model.outcome import Outcome, UpdateResult
from teg_ota.domain.model.package import PackageRef
from teg_ota.domain.model.settings import UpdateSettings
from teg_ota.domain.model.versions import normalised, parse_version
from teg_ota.domain.services.image_maker import ImageMaker
from teg_ota.domain.services.reporting import ProgressListener, Reporter, quiet
from teg_ota.domain.services.update_flow import UpdateFlow
from teg_ota.ports.container_runtime import ContainerRuntime
from teg_ota.ports.version_store import VersionStore

log = logging.getLogger(__name__)

ROLLED_BACK_BY_OPERATOR = "rolled back by the operator on the gateway"
ASSIGNMENT_KEYS = frozenset({"sw_version", "sw_title"})


class OperatorCommands:
    """What :class:`~teg_ota.domain.services.update_service.UpdateService` provides to
    these commands (set in its ``__init__``; the methods below are overridden there)."""

    _runtime: ContainerRuntime
    _store: VersionStore
    _settings: UpdateSettings
    _images: ImageMaker
    _reporter: Reporter
    _flow: UpdateFlow

    def handle_request(
        self, request: OtaRequest, on_progress: ProgressListener | None = None
    ) -> UpdateResult:
        raise NotImplementedError

    def recover(self) -> UpdateResult:
        raise NotImplementedError

    def report_current_software(self) -> None:
        raise NotImplementedError

    def _forget_failure(self) -> None:
        raise NotImplementedError

    def _update(
        self,
        package: PackageRef,
        state: ControllerState,
        on_progress: ProgressListener,
        *,
        publish: bool = True,
    ) -> UpdateResult:
        raise NotImplementedError

    def start_controller(
        self, version: str, *, force: bool = False, on_progress: ProgressListener | None = None
    ) -> UpdateResult:
        """Update to ``version`` now (CLI, library). ``force`` clears a remembered failure:
        the explicit operator command the decision table speaks of."""
        if not force:
            request = OtaRequest(version=version, title=self._settings.sw_title)
            return self.handle_request(request, on_progress)
        failed = self._store.failed()
        if failed is not None and failed.version == normalised(version):
            self._forget_failure()
        self.force_swap(version)
        try:
            request = OtaRequest(version=version, title=self._settings.sw_title)
            return self.handle_request(request, on_progress)
        finally:
            self._flow.gate.unforce(normalised(version) or version)

    def force_swap(self, version: str) -> None:
        """The swap to ``version`` does not wait for the controller's update lock or a
        maintenance window: also one waiting now (any thread: an RPC)."""
        self._flow.gate.force(normalised(version) or version)

    def set_swap_interrupt(self, interrupted: Callable[[str], str | None]) -> None:
        """What tells a waiting swap to a target to give way (a request for another
        version waits)."""
        self._flow.gate.interrupted = interrupted

    def cancel_waiting_swap(self, reason: str, *, resend: bool) -> None:
        """A swap waiting for the lock or a window ends without swapping (any thread):
        the package was unassigned, or an operator's command must run first (``resend``:
        the assignment is asked for again, to come back behind it)."""
        self._flow.gate.cancel(reason, resend=resend)

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
            state = self._runtime.controller_state()
            if state.running:
                return UpdateResult(Outcome.ALREADY_RUNNING, state.version, state.version)
            if self._images.start(parsed):
                log.info("controller %s started", parsed)
                try:
                    self._store.set_last_launched(parsed.value)
                except VersionStoreError as exc:
                    # It runs: that is what counts, and what ThingsBoard is told.
                    log.error("controller %s runs, but recording it failed: %s", parsed, exc)
                self.report_current_software()
                return UpdateResult(Outcome.UPDATED, parsed.value, parsed.value)
            # Its image is gone: the full safe update builds it, but tells ThingsBoard only
            # what runs afterwards (nothing was assigned: no sw_state).
            result = self._quietly(PackageRef(parsed), state)
            self.report_current_software()
            return result
        except (InvalidVersion, ContainerRuntimeError, VersionStoreError) as exc:
            log.error("could not start controller %s: %s", version, exc)
            return UpdateResult(Outcome.FAILED, version=version, error=str(exc))

    def _quietly(
        self, package: PackageRef, state: ControllerState, on_progress: ProgressListener = quiet
    ) -> UpdateResult:
        """The safe update without ``sw_state`` reports; never raises."""
        try:
            return self._update(package, state, on_progress, publish=False)
        except Exception as exc:
            log.exception("unexpected error while starting controller %s", package.version)
            try:
                self.recover()
            except Exception:
                log.exception("recovery after the unexpected error failed too")
            return UpdateResult(
                Outcome.FAILED, version=package.version.value, error=f"internal error: {exc}"
            )

    def forget_assignment(self, deleted_keys: tuple[str, ...]) -> bool:
        """ThingsBoard deleted the assignment (unassigned the package): forget the failure
        and the last answer, so assigning it again is the operator's retry. A partial
        deletion (``sw_url``, ``sw_tag`` beside a new assignment) forgets nothing."""
        if not ASSIGNMENT_KEYS & set(deleted_keys):
            return False
        log.info("the package was unassigned in ThingsBoard; forgetting failures and answers")
        self._forget_failure()
        self._reporter.forget()
        return True

    def stop_controller(self) -> None:
        """The seed's ``stop_controller``: remember the running version, then stop it."""
        state = self._runtime.controller_state()
        if state.running and state.version:
            try:
                self._store.set_last_launched(state.version)
            except VersionStoreError as exc:
                log.error("could not record %s before stopping it: %s", state.version, exc)
        self._runtime.stop_controller(self._settings.stop_grace_s)

    def rollback(
        self,
        on_progress: ProgressListener = quiet,
        *,
        failing: str | None = None,
        reason: str | None = None,
    ) -> UpdateResult:
        """Operator command: back to the known-good version, or, when that is what runs
        (the usual case after a successful update), to the one known good before it.

        ``failing`` and ``reason``: the watchdog's crash-loop rollback of ``failing`` (which
        is then not running), reported FAILED with ``reason`` and what it rolled back to,
        and remembered under the current settings (a settings change retries it)."""
        try:
            state = self._runtime.controller_state()
        except ContainerRuntimeError as exc:
            return UpdateResult(Outcome.FAILED, error=str(exc))
        running = failing if failing is not None else (state.version if state.running else None)
        target = known_good.rollback_target(self._store.known_good_history(), running)
        if target is None:
            return UpdateResult(Outcome.FAILED, error="no earlier known-good version recorded")
        failed = self._store.failed()
        if failed is not None and failed.version == target:
            self._forget_failure()
        result = self._quietly(PackageRef(parse_version(target)), state, on_progress)
        if result.outcome is Outcome.UPDATED and running is not None and running != target:
            # The operator's word sticks: the version rolled back from is FAILED on the
            # dashboard, and the re-sent assignment does not bring it back.
            error = f"{reason}; rolled back to {target}" if reason else ROLLED_BACK_BY_OPERATOR
            # No fingerprint for the operator: their word holds whatever the settings become.
            fingerprint = None if reason is None else self._settings.fingerprint
            try:
                self._store.set_failed(FailedVersion(running, error, fingerprint))
            except VersionStoreError as exc:
                log.error("could not remember %s as failed: %s", running, exc)
            self._reporter.alone(OtaState.FAILED, error, target, version=running)
        elif result.outcome is Outcome.UPDATED:
            self.report_current_software()
        return result
