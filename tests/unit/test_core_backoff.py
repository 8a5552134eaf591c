"""RestartBackoff cases ``scripts/mutation.sh`` found untested in test_backoff.py: a pending
restart is dropped once the controller runs (whoever started it), and the hourly window
lets go of a restart exactly one hour old."""

from __future__ import annotations

from teg_ota.domain.core.backoff import BackoffPolicy, RestartBackoff


def test_a_controller_up_again_by_itself_leaves_no_restart_pending() -> None:
    backoff = RestartBackoff(BackoffPolicy())
    backoff.observe_down(0.0)
    assert backoff.seconds_until_restart(0.5) == 1.5

    backoff.observe_running(1.0)

    assert backoff.seconds_until_restart(1.0) == 0.0
    assert backoff.restart_due(1.0)


def test_a_recorded_restart_leaves_no_restart_pending() -> None:
    backoff = RestartBackoff(BackoffPolicy())
    backoff.observe_down(0.0)

    backoff.record_restart(2.0)

    assert backoff.seconds_until_restart(2.0) == 0.0
    assert backoff.restart_due(2.0)
    # The next outage is scheduled from scratch, with the streak carried on.
    backoff.observe_down(3.0)
    assert backoff.seconds_until_restart(3.0) == 4.0


def test_a_restart_exactly_an_hour_old_has_left_the_window() -> None:
    # Restarts recorded back to back (forced ones do not wait for the backoff): at 3600 s
    # the one at 0 s no longer counts, the two at 10 s and 20 s still fill the window.
    policy = BackoffPolicy(initial_s=0.01, max_s=0.01, max_restarts_per_hour=2)
    backoff = RestartBackoff(policy)
    for at in (0.0, 10.0, 20.0):
        backoff.record_restart(at)

    backoff.observe_down(3600.0)

    assert backoff.seconds_until_restart(3600.0) == 10.0
    assert backoff.restart_due(3610.0)
