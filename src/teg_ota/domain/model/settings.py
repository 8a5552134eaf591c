"""Settings the domain services need; the app layer fills them from the environment."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from teg_ota.domain.model.backoff_policy import BackoffPolicy
from teg_ota.domain.model.fetch_retry_policy import FetchRetryPolicy


@dataclass(frozen=True, slots=True)
class UpdateSettings:
    image_prefix: str = "teg-controller-"
    sw_title: str | None = None
    """Packages with another title are ignored; also reported as ``current_sw_title``."""
    health_grace_s: float = 30.0
    """How long a new controller must stay up before the update counts as UPDATED."""
    health_timeout_s: float = 120.0
    """Extra time a HEALTHCHECK may stay ``starting`` after the grace period."""
    stop_grace_s: float = 60.0
    """SIGTERM-to-SIGKILL grace of every stop: a swap, a rollback, a stop, a restart (the
    original gateway's 60 s)."""
    min_free_disk_bytes: int = 512 * 1024 * 1024
    keep_older_images: int = 1
    """Images kept besides the running and the previous one, newest first."""
    max_interrupted_attempts: int = 3
    """A version whose swap or health gate was interrupted this many times in a row is
    failed and rolled back (the loop guard, ``core.recovery``)."""
    fingerprint: str | None = None
    """A digest of the build and run settings (the app computes it): a failure remembered
    under other settings is not held against a version."""
    allow_moved_tags: bool = False
    """A tag that now names another commit than at its first success is rebuilt (and a
    re-sent assignment of the running tag checks the remote), instead of refused."""
    update_windows: str = ""
    """Daily maintenance windows in local time (``02:00-04:00,13:00-13:30``; empty: any
    time): outside them a prepared update waits to swap (``core.windows``)."""
    timezone: datetime.tzinfo | None = None
    """The zone of the windows and of the times in ``update_deferred`` (``None``: UTC; the
    app passes the system's)."""
    swap_max_wait_s: float | None = None
    """How long a swap waits for the controller's update lock (``None``: for ever)."""
    swap_force_after_wait: bool = False
    """After ``swap_max_wait_s``: swap anyway instead of failing."""
    swap_poll_s: float = 1.0
    """How often a deferred swap looks at the lock, the windows and the controller."""
    fetch_retry: FetchRetryPolicy = field(default_factory=FetchRetryPolicy)
    """A fetch the origin answered "not now" (429, 5xx, a reset connection) is tried again."""

    def __post_init__(self) -> None:
        if self.health_grace_s < 0 or self.health_timeout_s < 0 or self.stop_grace_s < 0:
            raise ValueError("health and stop grace periods must be >= 0")
        if self.min_free_disk_bytes < 0 or self.keep_older_images < 0:
            raise ValueError("disk floor and kept images must be >= 0")
        if self.max_interrupted_attempts < 1:
            raise ValueError("max interrupted attempts must be >= 1")


@dataclass(frozen=True, slots=True)
class WatchdogSettings:
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    crash_rollback_within_s: float = 0.0
    """A version assigned and UPDATED less than this long ago that enters a crash loop is
    rolled back to the known-good one and reported FAILED with the evidence (0: off, the
    watchdog only restarts it with backoff and reports CRASH_LOOP)."""
