"""When a prepared update may stop the running controller: its update lock, the maintenance
windows (issue 15). The table's WAITING phase, between VERIFYING and SWAPPING.

Preparation is never deferred: the image is built or loaded and verified first, and only the
stop waits. The wait only ever protects a running controller: with none running (a crash,
a start-up launch) there is nothing to protect, and the swap goes ahead at once.

While waiting, ThingsBoard sees the truth: ``sw_state`` stays VERIFIED and the telemetry
key ``update_deferred`` says why ("waiting for the controller's update lock since ...", or
for the maintenance window and when it opens); it is set to ``""`` when the wait ends. The
wait is a poll (every ``swap_poll_s``) of the clock, the windows and the lock, so a clock
that jumps, a DST change or a lock released by a dying holder are seen at the next poll.

It ends:

* in the swap: the window is open and the lock was taken (teg-ota then holds it until the
  new controller has started: :meth:`release`), or the controller stopped running, or the
  swap was forced (``update --force``, the ``update`` RPC with ``"force": true``), or the
  lock was held longer than ``swap_max_wait_s`` with ``swap_force_after_wait``;
* in FAILED (nobody's fault: not remembered) after ``swap_max_wait_s`` of lock wait;
* held, like a shutdown's hold, when teg-ota stops or a newer assignment replaces this one
  (``interrupted`` says so): the old controller was never touched.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable

from teg_ota.domain.core import windows
from teg_ota.domain.core.failures import Blame
from teg_ota.domain.core.phases import Done, Failed, Held, Result
from teg_ota.domain.model.settings import UpdateSettings
from teg_ota.domain.services.reporting import Reporter, notify
from teg_ota.ports.clock import Clock
from teg_ota.ports.container_runtime import ContainerRuntime, ContainerRuntimeError
from teg_ota.ports.update_lock import UpdateLock

log = logging.getLogger(__name__)

DEFERRED_KEY = "update_deferred"
_LONGEST_PAUSE_S = 2.0
"""Outside the windows: well under the runner's shutdown grace, so a stop finds the wait
between two polls and ends it cleanly (``update_deferred`` cleared)."""
_RUNNING_CHECK_S = 10.0
"""How often a waiting swap asks the engine whether the controller still runs."""


class SwapGate:
    def __init__(
        self,
        lock: UpdateLock | None,
        runtime: ContainerRuntime,
        clock: Clock,
        reporter: Reporter,
        settings: UpdateSettings,
    ) -> None:
        self._lock = lock
        self._runtime = runtime
        self._clock = clock
        self._reporter = reporter
        self._settings = settings
        self._windows = windows.parse_windows(settings.update_windows)
        self._forced: str | None = None
        self._waiting: str | None = None
        self._cancelled: tuple[str, bool] | None = None
        self.interrupted: Callable[[str], str | None] = lambda target: None
        """Why a waiting swap to ``target`` must give way (a request for another version
        waits), else ``None``; the runner sets it."""
        self.held: Callable[[], bool] = lambda: False

    @property
    def gated(self) -> bool:
        return self._lock is not None or bool(self._windows)

    def force(self, version: str) -> None:
        """The operator forces the swap to ``version`` (from any thread: an RPC arrives
        while the update waits): lock and windows are ignored for it."""
        self._forced = version

    def cancel(self, reason: str, *, resend: bool) -> None:
        """End a wait without the swap (any thread). The package was unassigned
        (``resend`` false): also an update still preparing will not wait. An operator's
        command must run now (``resend``: ThingsBoard is asked for the assignment again, so
        it comes back behind it): only a wait in progress ends; an update still preparing
        goes on, and the command runs after it."""
        if resend and self._waiting is None:
            return  # an operator's command only ends a wait; one still preparing goes on
        self._cancelled = (reason, resend)

    def new_update(self) -> None:
        """An update starts: a cancel meant for an earlier one is forgotten; one that
        arrives from now on (while it prepares, too) ends its wait."""
        self._cancelled = None

    def unforce(self, version: str) -> None:
        if self._forced == version:
            self._forced = None

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()

    def wait(
        self,
        target: str,
        digest: str | None,
        *,
        old_running: bool,
        publish: bool,
        listener: Callable[[str], None],
    ) -> Result:
        if not old_running or not self.gated:
            return Done(digest=digest)
        self._waiting = target
        try:
            return self._poll(target, digest, publish, listener)[0]
        finally:
            self._waiting = None
            if self._forced == target:
                self._forced = None

    def _poll(
        self,
        target: str,
        digest: str | None,
        publish: bool,
        listener: Callable[[str], None],
    ) -> tuple[Result, str | None]:
        shown: str | None = None
        lock_since: tuple[float, float] | None = None  # (monotonic, wall clock)
        max_wait = self._settings.swap_max_wait_s
        next_look = self._clock.monotonic()
        while True:
            if self.held():
                return self._end(Held(), shown, publish)
            if self._forced == target:
                self._take_if_free()
                log.warning("swapping to %s now: forced by the operator", target)
                return self._end(Done(digest=digest), shown, publish)
            cancelled = self._cancelled
            if cancelled is not None:
                if cancelled[1]:
                    self._reporter.request_assignment()
                return self._end(Held(cancelled[0], replaced=True), shown, publish)
            now = self._clock.now()
            why = self._window_wait(now)
            if why is not None:
                lock_since = None  # the maximum wait counts inside the windows only
            else:
                if self._lock is None or self._lock.try_acquire():
                    return self._end(Done(digest=digest), shown, publish)
                if lock_since is None:
                    lock_since = (self._clock.monotonic(), now)
                why = f"waiting for the controller's update lock since {self._local(lock_since[1])}"
                waited = self._clock.monotonic() - lock_since[0]
                if max_wait is not None and waited >= max_wait:
                    return self._end(self._gave_up(target, digest, why, max_wait), shown, publish)
            if self._clock.monotonic() >= next_look:
                next_look = self._clock.monotonic() + _RUNNING_CHECK_S
                if not self._still_running(target):
                    log.warning("the controller stopped while %s waited: swapping now", target)
                    self._take_if_free()
                    return self._end(Done(digest=digest), shown, publish)
            reason = self.interrupted(target)
            if reason is not None:
                return self._end(Held(reason, replaced=True), shown, publish)
            if why != shown:
                log.info("update to %s deferred: %s", target, why)
                notify(listener, f"deferred: {why}")
                if publish:
                    self._reporter.telemetry({DEFERRED_KEY: why})
                shown = why
            pause = self._settings.swap_poll_s
            if lock_since is None:  # outside the windows: nothing to poll but the clock
                opening = windows.next_opening(self._windows, now, self._zone)
                until = (opening - now) if opening is not None else _RUNNING_CHECK_S
                pause = max(pause, min(until, _LONGEST_PAUSE_S))
            self._clock.sleep(pause)

    def _still_running(self, target: str) -> bool:
        """An engine that does not answer (restarting) is no reason to end the wait."""
        try:
            return self._runtime.controller_state().running
        except ContainerRuntimeError as exc:
            log.warning("waiting to swap to %s: cannot see the controller (%s)", target, exc)
            return True

    def _end(self, result: Result, shown: str | None, publish: bool) -> tuple[Result, str | None]:
        if shown is not None and publish:
            self._reporter.telemetry({DEFERRED_KEY: ""})
        return result, shown

    def _gave_up(self, target: str, digest: str | None, why: str, max_wait: float) -> Result:
        if self._settings.swap_force_after_wait:
            log.warning("%s for %g s: forcing the swap to %s", why, max_wait, target)
            return Done(digest=digest)
        return Failed(f"{why}; gave up after {max_wait:g} s", Blame.NOBODY)

    def _window_wait(self, now: float) -> str | None:
        zone = self._zone
        if windows.in_window(self._windows, now, zone):
            return None
        opening = windows.next_opening(self._windows, now, zone)
        when = f"; opens {self._local(opening)}" if opening is not None else ""
        return f"waiting for the maintenance window ({windows.describe(self._windows)}){when}"

    def _take_if_free(self) -> None:
        if self._lock is not None and not self._lock.try_acquire():
            log.warning(
                "the controller holds its update lock (%s): swapping anyway", self._lock.where
            )

    @property
    def _zone(self) -> datetime.tzinfo:
        return self._settings.timezone or datetime.UTC

    def _local(self, epoch_s: float) -> str:
        moment = datetime.datetime.fromtimestamp(epoch_s, self._zone)
        return moment.strftime("%Y-%m-%d %H:%M:%S %Z").strip()
