"""The restart backoff's settings, and the delay they give: a value the settings carry."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    initial_s: float = 2.0
    factor: float = 2.0
    max_s: float = 300.0
    reset_after_s: float = 600.0
    """A run this long clears the failure count (kubelet, IoT Edge: 10 minutes)."""
    jitter: float = 0.0
    """Fraction of the delay added at random (0.1 = up to +10 %)."""
    max_restarts_per_hour: int = 20
    crash_loop_after: int = 5
    """Consecutive quick failures after which the controller is reported crash-looping."""

    def __post_init__(self) -> None:
        for name in ("initial_s", "factor", "max_s", "reset_after_s", "jitter"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"backoff {name} must be a finite number")
        if self.initial_s <= 0 or self.max_s < self.initial_s:
            raise ValueError("backoff needs 0 < initial_s <= max_s")
        if self.factor < 1:
            raise ValueError("backoff factor must be >= 1")
        if self.reset_after_s <= 0:
            raise ValueError("backoff reset_after_s must be > 0")
        if not 0 <= self.jitter <= 1:
            raise ValueError("backoff jitter must be between 0 and 1")
        if self.max_restarts_per_hour < 1 or self.crash_loop_after < 1:
            raise ValueError("restart limits must be >= 1")

    def delay_for(self, failures: int, random: Callable[[], float] | None = None) -> float:
        """The wait before restart number ``failures`` (1-based) of a failure streak."""
        exponent = max(failures - 1, 0)
        try:
            delay = min(self.initial_s * self.factor**exponent, self.max_s)
        except OverflowError:  # a streak of thousands: long past the cap
            delay = self.max_s
        if self.jitter and random is not None:
            delay += delay * self.jitter * random()
        return delay
