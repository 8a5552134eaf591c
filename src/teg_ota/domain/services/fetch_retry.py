"""Ask a package source for a version's digest again when its origin answered "not now".

Above the port, so every :class:`~teg_ota.ports.package_source.PackageSource` gets it: an
adapter only says what happened (:class:`~teg_ota.domain.model.errors.SourceRateLimited`,
:class:`~teg_ota.domain.model.errors.SourceTemporarilyUnavailable`); when to try again is
decided here, with full jitter (``core.fetch_retry``) so a fleet rate-limited at the same
second does not come back at the same second. Anything else (no credentials, an unknown
version, a plain unreachable origin) is raised at once, as before.

The update stays in DOWNLOADING meanwhile (reported when PREPARING began); each retry goes
to the log and the progress listener. When the budget ends the last fault is raised with the
number of attempts: still a :class:`~teg_ota.domain.model.errors.FetchFailed`, so the
update fails without blaming the version (``core.failures``) and a re-sent assignment is
tried again.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

from teg_ota.domain.core.fetch_retry import next_step, retry_delay
from teg_ota.domain.core.jitter import RandomSource
from teg_ota.domain.model.errors import SourceTransientFault
from teg_ota.domain.model.fetch_retry_policy import FetchRetryPolicy
from teg_ota.domain.model.ota_state import OtaState
from teg_ota.domain.model.package import PackageRef
from teg_ota.domain.services.reporting import ProgressListener, notify, quiet
from teg_ota.ports.clock import Clock
from teg_ota.ports.package_source import PackageSource

log = logging.getLogger(__name__)

_LOOK_EVERY_S = 1.0
"""How often a retry's wait asks ``stop_retrying`` (the budget spans minutes: a newer
assignment or a shutdown must not wait behind it)."""


class FetchRetry:
    def __init__(
        self, clock: Clock, policy: FetchRetryPolicy, rng: RandomSource | None = None
    ) -> None:
        self._clock = clock
        self._policy = policy
        self._rng: RandomSource = rng if rng is not None else random.Random()  # noqa: S311
        self.stop_retrying: Callable[[str], str | None] | None = None
        """Why retries for a target must end now (teg-ota stops, another version waits),
        else ``None``; the update flow sets it. The last fault is then raised at once."""

    def resolve(
        self, source: PackageSource, package: PackageRef, listener: ProgressListener = quiet
    ) -> str:
        """``source.resolve(package)``, tried up to ``policy.attempts`` times while it
        raises a :class:`SourceTransientFault`."""
        step = self._policy.initial_s
        attempt = 1
        while True:
            try:
                return source.resolve(package)
            except SourceTransientFault as fault:
                if attempt >= self._policy.attempts:
                    raise _gave_up(fault, attempt) from None
                delay = retry_delay(self._policy, step, fault.retry_after_s, self._rng)
                line = (
                    f"[{OtaState.DOWNLOADING}] {fault}; attempt {attempt + 1} of "
                    f"{self._policy.attempts} in {delay:.1f} s"
                )
                log.warning("%s", line)
                notify(listener, line)
                why = self._wait(delay, package.version.value)
                if why is not None:
                    raise _gave_up(fault, attempt, why) from None
                step = next_step(self._policy, step)
                attempt += 1

    def _wait(self, delay: float, target: str) -> str | None:
        """Sleep ``delay``, in slices when something may end the retries meanwhile."""
        stop = self.stop_retrying
        if stop is None:
            self._clock.sleep(delay)
            return None
        deadline = self._clock.monotonic() + delay
        while (why := stop(target)) is None:
            left = deadline - self._clock.monotonic()
            if left <= 0:
                return None
            self._clock.sleep(min(left, _LOOK_EVERY_S))
        return why


def _gave_up(
    fault: SourceTransientFault, attempts: int, why: str | None = None
) -> SourceTransientFault:
    """The last fault, of its own kind, saying how often it was tried (and why no more)."""
    tried = "1 attempt" if attempts == 1 else f"{attempts} attempts"
    ended = f"; stopped retrying: {why}" if why else ""
    return type(fault)(f"{fault}; gave up after {tried}{ended}", retry_after_s=fault.retry_after_s)
