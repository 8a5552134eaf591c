"""When to restart a controller that stopped: exponential backoff with a stable-run reset.

Pure: every method is given the current monotonic time and never sleeps. Defaults and
their justification against moby, kubelet and IoT Edge are in docs/architecture.md.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from teg_ota.domain.model.backoff_policy import BackoffPolicy

__all__ = ["BackoffPolicy", "RestartBackoff"]


_HOUR = 3600.0


class RestartBackoff:
    """The restart history of one controller, and the next moment a restart is allowed."""

    def __init__(self, policy: BackoffPolicy, random: Callable[[], float] | None = None) -> None:
        self._policy = policy
        self._random = random
        self._failures = 0
        self._started_at: float | None = None
        self._down_since: float | None = None
        self._next_at: float | None = None
        self._restarts: deque[float] = deque()

    @property
    def failures(self) -> int:
        """Consecutive restarts that did not lead to a stable run."""
        return self._failures

    @property
    def crash_looping(self) -> bool:
        return self._failures >= self._policy.crash_loop_after

    def observe_running(self, now: float) -> None:
        """The controller is up; after ``reset_after_s`` of it the streak is forgotten."""
        if self._started_at is None:
            self._started_at = now
        self._down_since = None
        self._next_at = None
        if self._failures and now - self._started_at >= self._policy.reset_after_s:
            self._failures = 0

    def observe_down(self, now: float) -> None:
        """The controller is not running; schedules the next restart once per outage."""
        if self._down_since is not None:
            return
        self._down_since = now
        self._started_at = None
        self._failures += 1
        self._next_at = now + self._policy.delay_for(self._failures, self._random)

    def restart_due(self, now: float) -> bool:
        return self.seconds_until_restart(now) == 0.0

    def seconds_until_restart(self, now: float) -> float:
        if self._next_at is None:
            return 0.0
        while self._restarts and now - self._restarts[0] >= _HOUR:
            self._restarts.popleft()
        due = self._next_at
        if len(self._restarts) >= self._policy.max_restarts_per_hour:
            due = max(due, self._restarts[0] + _HOUR)
        return max(due - now, 0.0)

    def record_restart(self, now: float) -> None:
        """A restart was attempted now; the controller counts as up from here."""
        self._restarts.append(now)
        self._down_since = None
        self._next_at = None
        self._started_at = now

    def reset(self) -> None:
        """Forget the history: after an update the new version starts with a clean slate."""
        self._failures = 0
        self._started_at = None
        self._down_since = None
        self._next_at = None
