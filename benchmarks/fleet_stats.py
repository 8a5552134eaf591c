"""Rates from stamps: 1-second bins, their peak and 99th percentile, time to 99 % of a fleet.

Pure functions over lists of ``time.monotonic()`` stamps (the stand-in's and the fleet's):
the simulation's figures are computed only here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

BIN_S = 1.0


def bins(stamps: Sequence[float], start: float, end: float, bin_s: float = BIN_S) -> list[int]:
    """How many stamps fall in each ``bin_s`` bin of ``[start, end)``."""
    count = max(1, math.ceil((end - start) / bin_s))
    out = [0] * count
    for stamp in stamps:
        index = math.floor((stamp - start) / bin_s)
        if 0 <= index < count:
            out[index] += 1
    return out


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` 0.99: the 99th); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return float(ordered[rank - 1])


def active(counts: Sequence[int]) -> list[int]:
    """The bins from the first non-empty to the last: the percentile of a burst, not of
    the quiet seconds around it."""
    used = [i for i, c in enumerate(counts) if c]
    return list(counts[used[0] : used[-1] + 1]) if used else []


def time_to_fraction(
    stamps: Sequence[float], start: float, total: int, fraction: float = 0.99
) -> float | None:
    """Seconds from ``start`` until ``fraction`` of ``total`` stamps (one per gateway)
    arrived; ``None`` if they never did."""
    needed = max(1, math.ceil(fraction * total))
    after = sorted(s for s in stamps if s >= start)
    return after[needed - 1] - start if len(after) >= needed else None


def rate_figures(stamps: Sequence[float], start: float, end: float) -> tuple[int, float]:
    """``(peak, p99)`` per second of ``stamps`` within ``[start, end)``."""
    counts = bins(stamps, start, end)
    return max(counts), percentile(active(counts), 0.99)
