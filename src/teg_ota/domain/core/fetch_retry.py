"""The delays between fetch attempts an origin answered "not now": pure arithmetic.

Why full jitter: a fleet rate-limited by one Git server all at once would retry all at once
too, at every step of a shared backoff; each gateway drawing its delay uniform in
``[0, step]`` spreads the retries over the whole step. A ``Retry-After`` the server sent is a
floor (it knows when it will answer), cut to the longest step so that a server cannot park
the update worker for ever.
"""

from __future__ import annotations

from teg_ota.domain.core.jitter import RandomSource, full_jitter
from teg_ota.domain.model.fetch_retry_policy import FetchRetryPolicy


def retry_delay(
    policy: FetchRetryPolicy, step_s: float, retry_after_s: float | None, rng: RandomSource
) -> float:
    """The wait before the next attempt: full jitter over ``step_s``, not shorter than
    the server's ``retry_after_s`` (at most ``policy.max_s``)."""
    delay = full_jitter(step_s, rng)
    if retry_after_s is not None and retry_after_s > 0:
        delay = max(delay, min(retry_after_s, policy.max_s))
    return delay


def next_step(policy: FetchRetryPolicy, step_s: float) -> float:
    """The step doubles, up to ``policy.max_s``."""
    return min(step_s * 2, policy.max_s)
