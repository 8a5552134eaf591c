"""When to contact ThingsBoard again: full jitter and spreading windows, pure arithmetic.

Why: a fleet that lost its broker at the same second comes back at the same second, and
again at every step of a shared backoff, unless every gateway draws its own delay. Full
jitter (a delay uniform between zero and the backoff step, as in the AWS Architecture Blog's
"Exponential Backoff And Jitter") spreads the retries over the whole step; a window spreads
the first connection after start-up and the first reconnect after an established session
over ``window_s``, so the peak connect rate is about fleet size / window.

Nothing here sleeps or reads a clock: the caller passes the random source (a seeded
``random.Random`` in tests) and the duration a session lasted. The MQTT link
(``adapters/mqtt/reconnect.py``) applies it; docs/architecture.md describes the behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

STABLE_SESSION_S = 30.0
"""A session that lasted this long resets the reconnect backoff (and counts as established:
its loss is followed by a reconnect spread over the window). A shorter one counts as a
failure, so a broker that accepts and drops at once is not hammered."""

OLD_JITTER = 0.2
"""Without jitter (``TEG_MQTT_JITTER=0``) each delay is shortened by up to 20 %, as the
link did before full jitter: kept only so that the fleet simulation can compare."""


class RandomSource(Protocol):
    """What the schedule draws from: ``random.Random`` (seeded in tests) fits."""

    def random(self) -> float: ...

    def uniform(self, a: float, b: float) -> float: ...


def full_jitter(step_s: float, rng: RandomSource) -> float:
    """A delay uniform in ``[0, step_s]``."""
    if step_s < 0:
        raise ValueError(f"negative backoff step {step_s}")
    return rng.uniform(0.0, step_s)


def spread(window_s: float, rng: RandomSource) -> float:
    """A moment uniform in ``[0, window_s)``; ``0`` for a window of 0 (at once)."""
    if window_s < 0:
        raise ValueError(f"negative window {window_s}")
    return window_s * rng.random()


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """The link's reconnect schedule: steps double from ``initial_s`` up to ``max_s``;
    ``window_s`` spreads the first connection and the first reconnect after an established
    session; ``jitter=False`` is the old schedule (no window, no full jitter)."""

    initial_s: float
    max_s: float
    window_s: float = 0.0
    jitter: bool = True
    stable_session_s: float = STABLE_SESSION_S

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.max_s:
            raise ValueError("reconnect backoff: expected 0 < initial_s <= max_s")
        if not self.window_s >= 0:  # also refuses NaN
            raise ValueError(f"reconnect window {self.window_s} is negative")
        if not self.stable_session_s > 0:
            raise ValueError("stable_session_s must be positive")

    def next_step(self, step_s: float) -> float:
        return min(step_s * 2, self.max_s)


@dataclass(frozen=True, slots=True)
class Wait:
    """How long to wait before the next attempt, and the backoff step after it."""

    delay_s: float
    step_s: float


def first_connect(policy: ReconnectPolicy, rng: RandomSource) -> Wait:
    """Before the first connection after start-up: a moment spread over the window."""
    delay = spread(policy.window_s, rng) if policy.jitter else 0.0
    return Wait(delay, policy.initial_s)


def after_failure(policy: ReconnectPolicy, step_s: float, rng: RandomSource) -> Wait:
    """After a failed attempt: full jitter over the step; the step doubles."""
    return Wait(_jittered(policy, step_s, rng), policy.next_step(step_s))


def after_session(
    policy: ReconnectPolicy, step_s: float, lasted_s: float, rng: RandomSource
) -> Wait:
    """After a session that lasted ``lasted_s`` was lost.

    Established (at least ``stable_session_s``): the backoff starts over and the reconnect
    is spread over the window. Shorter: a failure, but never sooner than the window would
    spread it: uniform in ``[0, max(window, step)]`` and the step doubles.
    """
    if not policy.jitter:
        step = policy.initial_s if lasted_s >= policy.stable_session_s else step_s
        return Wait(_jittered(policy, step, rng), policy.next_step(step))
    if lasted_s >= policy.stable_session_s:
        return Wait(spread(policy.window_s, rng), policy.initial_s)
    return Wait(full_jitter(max(policy.window_s, step_s), rng), policy.next_step(step_s))


def after_error(policy: ReconnectPolicy, step_s: float, rng: RandomSource) -> Wait:
    """After an unexpected error (a bug): the longest step, jittered; the step stays."""
    return Wait(_jittered(policy, policy.max_s, rng), step_s)


def _jittered(policy: ReconnectPolicy, step_s: float, rng: RandomSource) -> float:
    if policy.jitter:
        return full_jitter(step_s, rng)
    return step_s * (1.0 - OLD_JITTER * rng.random())
