"""The fleet-spreading schedule (domain/core/jitter.py), over seeded random sources: every
delay in its range, the draws spread over the whole range, windows of 0 at once, and
``jitter=False`` the old fixed schedule exactly."""

from __future__ import annotations

import math
import random

import pytest

from teg_ota.domain.core.jitter import (
    OLD_JITTER,
    STABLE_SESSION_S,
    ReconnectPolicy,
    Wait,
    after_error,
    after_failure,
    after_session,
    first_connect,
    full_jitter,
    spread,
)

DRAWS = 1000
POLICY = ReconnectPolicy(initial_s=1.0, max_s=60.0, window_s=10.0)
OLD = ReconnectPolicy(initial_s=1.0, max_s=60.0, window_s=10.0, jitter=False)


def tenths(values: list[float], width: float) -> list[int]:
    """How many of ``values`` fall in each tenth of ``[0, width]``."""
    counts = [0] * 10
    for value in values:
        counts[min(int(value / width * 10), 9)] += 1
    return counts


def assert_spread(values: list[float], width: float) -> None:
    """No tenth of the range holds more than twice its uniform share, none is nearly empty."""
    counts = tenths(values, width)
    share = len(values) / 10
    assert max(counts) <= 2 * share, counts
    assert min(counts) >= share / 2, counts


# --------------------------------------------------------------------- the draws


@pytest.mark.parametrize("seed", [0, 1, 42])
def test_full_jitter_is_uniform_between_zero_and_the_step(seed: int) -> None:
    rng = random.Random(seed)
    delays = [full_jitter(8.0, rng) for _ in range(DRAWS)]
    assert all(0.0 <= delay <= 8.0 for delay in delays)
    assert_spread(delays, 8.0)
    assert 3.5 < sum(delays) / DRAWS < 4.5  # the mean of U(0, 8)


@pytest.mark.parametrize("seed", [0, 7, 2026])
def test_spread_is_uniform_over_the_window(seed: int) -> None:
    rng = random.Random(seed)
    moments = [spread(10.0, rng) for _ in range(DRAWS)]
    assert all(0.0 <= moment < 10.0 for moment in moments)
    assert_spread(moments, 10.0)


def test_a_window_or_step_of_zero_is_at_once() -> None:
    rng = random.Random(3)
    assert [spread(0.0, rng) for _ in range(5)] == [0.0] * 5
    assert [full_jitter(0.0, rng) for _ in range(5)] == [0.0] * 5


def test_the_same_seed_gives_the_same_delays() -> None:
    first = [spread(10.0, random.Random(9)), full_jitter(4.0, random.Random(9))]
    again = [spread(10.0, random.Random(9)), full_jitter(4.0, random.Random(9))]
    assert first == again


def test_negative_ranges_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        spread(-1.0, random.Random(0))
    with pytest.raises(ValueError, match="negative"):
        full_jitter(-0.1, random.Random(0))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_s": 0.0, "max_s": 60.0},
        {"initial_s": 2.0, "max_s": 1.0},
        {"initial_s": 1.0, "max_s": 60.0, "window_s": -1.0},
        {"initial_s": 1.0, "max_s": 60.0, "window_s": math.nan},
        {"initial_s": 1.0, "max_s": 60.0, "stable_session_s": 0.0},
    ],
)
def test_a_policy_that_makes_no_sense_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ReconnectPolicy(**kwargs)


# --------------------------------------------------------------------- the schedule


def test_the_first_connection_is_spread_over_the_window() -> None:
    waits = [first_connect(POLICY, random.Random(seed)) for seed in range(DRAWS)]
    assert all(0.0 <= wait.delay_s < 10.0 and wait.step_s == 1.0 for wait in waits)
    assert_spread([wait.delay_s for wait in waits], 10.0)


def test_failures_get_full_jitter_over_a_doubling_step() -> None:
    rng = random.Random(5)
    steps, delays, step = [], [], POLICY.initial_s
    for _ in range(9):
        wait = after_failure(POLICY, step, rng)
        steps.append(step)
        delays.append(wait.delay_s)
        step = wait.step_s
    assert steps == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert all(0.0 <= delay <= step for delay, step in zip(delays, steps, strict=True))
    many = [after_failure(POLICY, 60.0, rng).delay_s for _ in range(DRAWS)]
    assert_spread(many, 60.0)


def test_an_established_session_lost_is_spread_over_the_window_and_resets_the_step() -> None:
    rng = random.Random(11)
    waits = [after_session(POLICY, 32.0, STABLE_SESSION_S, rng) for _ in range(DRAWS)]
    assert all(0.0 <= wait.delay_s < 10.0 and wait.step_s == 1.0 for wait in waits)
    assert_spread([wait.delay_s for wait in waits], 10.0)


def test_a_session_lost_early_counts_as_a_failure_never_sooner_than_the_window() -> None:
    rng = random.Random(12)
    # A small step: the window still spreads it.
    small = [after_session(POLICY, 2.0, 1.0, rng) for _ in range(DRAWS)]
    assert all(0.0 <= wait.delay_s <= 10.0 and wait.step_s == 4.0 for wait in small)
    assert_spread([wait.delay_s for wait in small], 10.0)
    # A broker that keeps accepting and dropping: the step grows past the window.
    big = [after_session(POLICY, 32.0, 1.0, rng) for _ in range(DRAWS)]
    assert all(0.0 <= wait.delay_s <= 32.0 and wait.step_s == 60.0 for wait in big)
    assert_spread([wait.delay_s for wait in big], 32.0)


def test_windows_of_zero_are_at_once_and_failures_still_back_off() -> None:
    policy = ReconnectPolicy(initial_s=1.0, max_s=60.0, window_s=0.0)
    rng = random.Random(13)
    assert first_connect(policy, rng) == Wait(0.0, 1.0)
    assert after_session(policy, 8.0, 3600.0, rng) == Wait(0.0, 1.0)
    early = after_session(policy, 8.0, 1.0, rng)
    assert 0.0 <= early.delay_s <= 8.0 and early.step_s == 16.0
    failed = after_failure(policy, 1.0, rng)
    assert 0.0 <= failed.delay_s <= 1.0 and failed.step_s == 2.0


def test_without_jitter_the_old_fixed_schedule() -> None:
    """Connect at once; each delay is the step shortened by up to 20 %, the step doubling;
    an established session lost starts over at the initial step (the link before #16)."""
    rng, twin = random.Random(21), random.Random(21)

    def old(step: float) -> float:
        return step * (1.0 - OLD_JITTER * twin.random())

    assert first_connect(OLD, rng) == Wait(0.0, 1.0)  # draws nothing
    step, delays, expected = 1.0, [], []
    for _ in range(8):
        wait = after_failure(OLD, step, rng)
        delays.append(wait.delay_s)
        expected.append(old(step))
        step = wait.step_s
    assert delays == expected
    assert step == 60.0
    assert after_session(OLD, 60.0, STABLE_SESSION_S, rng) == Wait(old(1.0), 2.0)
    assert after_session(OLD, 8.0, 1.0, rng) == Wait(old(8.0), 16.0)
    assert after_error(OLD, 4.0, rng) == Wait(old(60.0), 4.0)


def test_an_unexpected_error_waits_about_the_longest_step_and_keeps_the_step() -> None:
    rng = random.Random(22)
    waits = [after_error(POLICY, 4.0, rng) for _ in range(200)]
    assert all(0.0 <= wait.delay_s <= 60.0 and wait.step_s == 4.0 for wait in waits)
