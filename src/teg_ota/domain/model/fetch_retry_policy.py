"""How often, and how patiently, a fetch the origin answered "not now" is tried again."""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_RETRIES = 6
DEFAULT_INITIAL_S = 10.0
DEFAULT_MAX_S = 300.0


@dataclass(frozen=True, slots=True)
class FetchRetryPolicy:
    """``retries`` more attempts after the first; the step starts at ``initial_s`` and
    doubles up to ``max_s``; each delay is drawn uniform in ``[0, step]`` (full jitter)."""

    retries: int = DEFAULT_RETRIES
    initial_s: float = DEFAULT_INITIAL_S
    max_s: float = DEFAULT_MAX_S
    """The defaults outlast a Git server that rate-limits a whole fleet for a minute (the
    delays' sum is 305 s on average, under 60 s about once in a hundred: benchmarks/fleet.py's
    ``git_rate_limited``), and give up within about ten minutes (610 s at most)."""

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError("fetch retries must be >= 0")
        if not (math.isfinite(self.initial_s) and math.isfinite(self.max_s)):
            raise ValueError("fetch retry delays must be finite numbers")
        if not 0 < self.initial_s <= self.max_s:
            raise ValueError("fetch retry needs 0 < initial_s <= max_s")

    @property
    def attempts(self) -> int:
        """The first attempt and every retry."""
        return self.retries + 1
