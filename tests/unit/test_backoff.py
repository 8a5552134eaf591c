"""Restart backoff, driven by explicit monotonic times: nothing sleeps, nothing reads a clock."""

from __future__ import annotations

import math

import pytest

from teg_ota.domain.core.backoff import BackoffPolicy, RestartBackoff

HOUR = 3600.0
NAN = math.nan


# --------------------------------------------------------------------------- BackoffPolicy


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param({"initial_s": 0}, "initial_s", id="initial-zero"),
        pytest.param({"initial_s": -1}, "initial_s", id="initial-negative"),
        pytest.param({"initial_s": 10, "max_s": 5}, "max_s", id="max-below-initial"),
        pytest.param({"factor": 0.5}, "factor", id="factor-below-one"),
        pytest.param({"factor": 0}, "factor", id="factor-zero"),
        pytest.param({"reset_after_s": 0}, "reset_after_s", id="reset-zero"),
        pytest.param({"reset_after_s": -5}, "reset_after_s", id="reset-negative"),
        pytest.param({"jitter": -0.1}, "jitter", id="jitter-negative"),
        pytest.param({"jitter": 1.1}, "jitter", id="jitter-above-one"),
        pytest.param({"jitter": NAN}, "jitter", id="jitter-nan"),
        pytest.param({"max_restarts_per_hour": 0}, "limits", id="no-restarts-per-hour"),
        pytest.param({"crash_loop_after": 0}, "limits", id="crash-loop-after-zero"),
        # NaN compares false with everything, so it slips through ``x <= 0``-style checks;
        # a NaN delay makes restart_due() false forever (the controller is never restarted).
        pytest.param({"initial_s": NAN}, "initial_s", id="initial-nan"),
        pytest.param({"max_s": NAN}, "max_s", id="max-nan"),
        pytest.param({"factor": NAN}, "factor", id="factor-nan"),
        pytest.param({"reset_after_s": NAN}, "reset_after_s", id="reset-nan"),
    ],
)
def test_policy_rejects_invalid_settings(fields: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BackoffPolicy(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({}, id="defaults"),
        pytest.param({"factor": 1}, id="constant-delay"),
        pytest.param({"initial_s": 5, "max_s": 5}, id="initial-equals-max"),
        pytest.param({"jitter": 0}, id="no-jitter"),
        pytest.param({"jitter": 1}, id="full-jitter"),
        pytest.param({"max_restarts_per_hour": 1, "crash_loop_after": 1}, id="minimal-limits"),
    ],
)
def test_policy_accepts_edge_settings(fields: dict[str, float]) -> None:
    policy = BackoffPolicy(**fields)  # type: ignore[arg-type]

    assert policy.delay_for(1) == policy.initial_s
    long_streak = policy.max_s if policy.factor > 1 else policy.initial_s
    assert policy.delay_for(10_000) == long_streak


def test_default_schedule_doubles_from_2s_and_caps_at_300s() -> None:
    policy = BackoffPolicy()

    assert [policy.delay_for(n) for n in range(1, 11)] == [
        2,
        4,
        8,
        16,
        32,
        64,
        128,
        256,
        300,
        300,
    ]


def test_delay_for_zero_failures_is_the_initial_delay() -> None:
    assert BackoffPolicy().delay_for(0) == 2.0


@pytest.mark.parametrize("failures", [100, 1024, 1025, 5000, 10**6])
def test_delay_for_a_very_long_streak_stays_capped(failures: int) -> None:
    # 2 * 2.0 ** 1024 overflows a float: a controller crash-looping for two days (about
    # 1025 restarts at 20 an hour) must still get the capped delay, not an OverflowError.
    assert BackoffPolicy().delay_for(failures) == 300.0


def test_constant_policy() -> None:
    policy = BackoffPolicy(initial_s=5, factor=1, max_s=60)

    assert {policy.delay_for(n) for n in range(1, 20)} == {5}


@pytest.mark.parametrize(
    ("draw", "expected"),
    [
        pytest.param(1.0, 8.0 * 1.25, id="full-jitter-draw"),
        pytest.param(0.5, 8.0 * 1.125, id="half-jitter-draw"),
        pytest.param(0.0, 8.0, id="zero-draw"),
    ],
)
def test_jitter_uses_the_injected_random_source(draw: float, expected: float) -> None:
    policy = BackoffPolicy(jitter=0.25)

    assert policy.delay_for(3, random=lambda: draw) == pytest.approx(expected)


def test_jitter_applies_on_top_of_the_cap() -> None:
    policy = BackoffPolicy(jitter=0.1)

    assert policy.delay_for(50, random=lambda: 1.0) == pytest.approx(330.0)


def test_no_jitter_without_a_random_source() -> None:
    assert BackoffPolicy(jitter=0.5).delay_for(1) == 2.0


def test_zero_jitter_ignores_the_random_source() -> None:
    assert BackoffPolicy().delay_for(1, random=lambda: 1.0) == 2.0


# --------------------------------------------------------------------------- RestartBackoff


def _crash_and_restart(backoff: RestartBackoff, now: float) -> float:
    """The controller is seen down at ``now``; restart when due. Returns the restart time."""
    backoff.observe_down(now)
    restart_at = now + backoff.seconds_until_restart(now)
    assert backoff.restart_due(restart_at)
    backoff.record_restart(restart_at)
    return restart_at


def test_fresh_backoff_has_no_failures_and_nothing_scheduled() -> None:
    backoff = RestartBackoff(BackoffPolicy())

    assert backoff.failures == 0
    assert not backoff.crash_looping
    assert backoff.seconds_until_restart(0.0) == 0.0


def test_first_outage_waits_initial_delay() -> None:
    backoff = RestartBackoff(BackoffPolicy())

    backoff.observe_down(100.0)

    assert backoff.failures == 1
    assert backoff.seconds_until_restart(100.0) == 2.0
    assert not backoff.restart_due(101.9)
    assert backoff.restart_due(102.0)
    assert backoff.seconds_until_restart(150.0) == 0.0


def test_repeated_quick_crashes_double_the_wait() -> None:
    backoff = RestartBackoff(BackoffPolicy())
    now = 0.0
    waits = []
    for _ in range(6):
        backoff.observe_down(now)
        wait = backoff.seconds_until_restart(now)
        waits.append(wait)
        backoff.record_restart(now + wait)
        now += wait + 1.0  # crashes one second after each restart

    assert waits == [2, 4, 8, 16, 32, 64]
    assert backoff.failures == 6


def test_observe_down_during_one_outage_schedules_only_once() -> None:
    backoff = RestartBackoff(BackoffPolicy())

    backoff.observe_down(10.0)
    for now in (10.5, 11.0, 11.5):
        backoff.observe_down(now)

    assert backoff.failures == 1
    assert backoff.seconds_until_restart(11.5) == pytest.approx(0.5)
    assert backoff.restart_due(12.0)


def test_run_longer_than_reset_after_resets_the_streak() -> None:
    backoff = RestartBackoff(BackoffPolicy())
    now = 0.0
    for _ in range(4):
        now = _crash_and_restart(backoff, now) + 1.0
    assert backoff.failures == 4
    started = now - 1.0

    backoff.observe_running(started + 599.0)
    assert backoff.failures == 4
    backoff.observe_running(started + 600.0)
    assert backoff.failures == 0

    backoff.observe_down(started + 700.0)
    assert backoff.seconds_until_restart(started + 700.0) == 2.0


def test_short_runs_do_not_reset_the_streak() -> None:
    backoff = RestartBackoff(BackoffPolicy())
    restarted = _crash_and_restart(backoff, 0.0)

    backoff.observe_running(restarted + 10.0)
    backoff.observe_running(restarted + 599.0)
    backoff.observe_down(restarted + 599.5)

    assert backoff.failures == 2
    assert backoff.seconds_until_restart(restarted + 599.5) == 4.0


def test_controller_that_comes_back_by_itself_is_not_restarted() -> None:
    backoff = RestartBackoff(BackoffPolicy())

    backoff.observe_down(0.0)
    backoff.observe_running(1.0)

    assert backoff.failures == 1
    backoff.observe_running(601.0)
    assert backoff.failures == 0


def test_crash_looping_after_crash_loop_after_failures() -> None:
    backoff = RestartBackoff(BackoffPolicy(crash_loop_after=3))
    now = 0.0
    looping = []
    for _ in range(4):
        now = _crash_and_restart(backoff, now) + 1.0
        looping.append(backoff.crash_looping)

    assert looping == [False, False, True, True]


def test_stable_run_ends_crash_looping() -> None:
    backoff = RestartBackoff(BackoffPolicy(crash_loop_after=2))
    now = 0.0
    for _ in range(2):
        now = _crash_and_restart(backoff, now)
    assert backoff.crash_looping

    backoff.observe_running(now + 600.0)

    assert not backoff.crash_looping


def test_fourth_restart_within_the_hour_waits_until_an_hour_after_the_first() -> None:
    policy = BackoffPolicy(initial_s=0.01, max_s=0.01, max_restarts_per_hour=3)
    backoff = RestartBackoff(policy)
    first = _crash_and_restart(backoff, 0.0)
    _crash_and_restart(backoff, 1.0)
    _crash_and_restart(backoff, 2.0)

    backoff.observe_down(3.0)

    assert backoff.seconds_until_restart(3.0) == pytest.approx(first + HOUR - 3.0)
    assert not backoff.restart_due(first + HOUR - 0.001)
    assert backoff.restart_due(first + HOUR)


def test_rate_limit_window_slides() -> None:
    policy = BackoffPolicy(initial_s=0.01, max_s=0.01, max_restarts_per_hour=2)
    backoff = RestartBackoff(policy)
    _crash_and_restart(backoff, 0.0)
    second = _crash_and_restart(backoff, 1000.0)

    backoff.observe_down(HOUR + 500.0)

    # The first restart has left the window; the second still counts, alone.
    assert backoff.seconds_until_restart(HOUR + 500.0) == pytest.approx(0.01)
    backoff.record_restart(HOUR + 500.01)
    backoff.observe_down(HOUR + 501.0)
    assert backoff.seconds_until_restart(HOUR + 501.0) == pytest.approx(
        second + HOUR - (HOUR + 501.0)
    )


def test_jitter_in_restart_backoff_uses_the_injected_random_source() -> None:
    backoff = RestartBackoff(BackoffPolicy(jitter=0.5), random=lambda: 1.0)

    backoff.observe_down(0.0)

    assert backoff.seconds_until_restart(0.0) == pytest.approx(3.0)


def test_reset_forgets_the_streak() -> None:
    backoff = RestartBackoff(BackoffPolicy(crash_loop_after=2))
    now = 0.0
    for _ in range(3):
        now = _crash_and_restart(backoff, now) + 1.0
    backoff.observe_down(now)
    assert backoff.crash_looping

    backoff.reset()

    assert backoff.failures == 0
    assert not backoff.crash_looping
    assert backoff.restart_due(now)
    backoff.observe_down(now + 1.0)
    assert backoff.failures == 1
    assert backoff.seconds_until_restart(now + 1.0) == 2.0


def test_very_long_crash_loop_keeps_the_capped_delay() -> None:
    policy = BackoffPolicy(factor=10.0, max_restarts_per_hour=1_000_000)
    backoff = RestartBackoff(policy)
    now = 0.0
    for _ in range(400):  # 10.0 ** 309 overflows a float
        now = _crash_and_restart(backoff, now) + 1.0

    backoff.observe_down(now)

    assert backoff.failures == 401
    assert backoff.seconds_until_restart(now) == 300.0
