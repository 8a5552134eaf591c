"""The watchdog (the seed's restart_controller_if_needed) with a fixed clock: no sleeping."""

from __future__ import annotations

import pytest

from teg_ota.domain.core.backoff import BackoffPolicy
from teg_ota.domain.model.journal import JournalPhase, UpdateJournal
from teg_ota.domain.model.settings import WatchdogSettings
from teg_ota.domain.services.watchdog import NO_VERSION_ERROR, Watchdog

from .test_update_service import World, tag

POLICY = BackoffPolicy(initial_s=2, factor=2, max_s=60, reset_after_s=600, crash_loop_after=3)


class Guarded(World):
    def __init__(self) -> None:
        super().__init__()
        self.watchdog = Watchdog(
            self.runtime,
            self.store,
            self.telemetry,
            self.clock,
            self.service,
            WatchdogSettings(backoff=POLICY),
        )

    def tick(self) -> bool:
        return self.watchdog.restart_controller_if_needed()

    def tick_until_restart(self, limit_s: float = 3600) -> float:
        """Advance the fixed clock one second at a time until the watchdog restarts."""
        waited = 0.0
        while not self.tick():
            self.clock.advance(1)
            waited += 1
            assert waited < limit_s, "watchdog never restarted the controller"
        return waited


def states(world: Guarded) -> list[dict[str, object]]:
    """The controller_state telemetry, without the current_sw_* reports beside it."""
    return [values for values in world.telemetry.values if "controller_state" in values]


@pytest.fixture
def guarded() -> Guarded:
    return Guarded()


def test_running_controller_needs_nothing(guarded: Guarded) -> None:
    assert guarded.tick() is False
    assert guarded.runtime.calls == []


def test_stopped_controller_is_restarted_after_a_short_wait(guarded: Guarded) -> None:
    guarded.runtime.kill(exit_code=1)

    assert guarded.tick() is False  # the outage is noticed, the first restart waits 2 s
    waited = guarded.tick_until_restart()

    assert waited == 2
    assert guarded.runtime.running_version == "v1.0"
    assert guarded.runtime.calls == [f"run {tag('v1.0')}"]
    assert guarded.telemetry.reports == []
    assert {"current_sw_title": "teg-controller", "current_sw_version": "v1.0"} in (
        guarded.telemetry.values
    )


def test_repeated_crashes_back_off_exponentially_and_are_reported(guarded: Guarded) -> None:
    waits = []
    for _ in range(4):
        guarded.runtime.kill(exit_code=2)
        waits.append(guarded.tick_until_restart())
        guarded.clock.advance(1)  # crashes one second after each start

    assert waits == [2, 4, 8, 16]
    loop_reports = [v for v in states(guarded) if v["controller_state"] == "CRASH_LOOP"]
    assert len(loop_reports) == 1
    assert loop_reports[0]["controller_last_exit_code"] == 2
    assert guarded.watchdog.backoff.crash_looping


def test_a_stable_run_resets_the_backoff(guarded: Guarded) -> None:
    for _ in range(3):
        guarded.runtime.kill()
        guarded.tick_until_restart()
    guarded.clock.advance(601)
    guarded.tick()  # observes the long stable run

    guarded.runtime.kill()
    assert guarded.tick_until_restart() == 2
    assert states(guarded)[-1]["controller_state"] == "RUNNING"


def test_no_known_version_asks_thingsboard_and_says_so_outside_sw_state(
    guarded: Guarded,
) -> None:
    guarded.runtime.container = None
    guarded.store.launched = None

    guarded.tick_until_restart()
    guarded.clock.advance(1)
    guarded.tick_until_restart()

    assert guarded.telemetry.attribute_requests == 2
    assert guarded.telemetry.states == []  # a never-assigned device lands in no tab
    said = [values for values in guarded.telemetry.values if "controller_error" in values]
    assert said == [{"controller_state": "NO_VERSION", "controller_error": NO_VERSION_ERROR}]


def test_default_version_is_used_when_nothing_was_launched(guarded: Guarded) -> None:
    guarded.runtime.container = None
    guarded.store.launched = None
    guarded.store.default = "v1.1"

    guarded.tick_until_restart()

    assert guarded.runtime.running_version == "v1.1"
    assert guarded.telemetry.states == []  # launched, not assigned: current_sw_* only
    assert guarded.telemetry.values[-1]["current_sw_version"] == "v1.1"


def test_a_left_over_journal_is_recovered_before_any_restart(guarded: Guarded) -> None:
    guarded.runtime.kill()
    guarded.store.current_journal = UpdateJournal("v1.1", "v1.0", JournalPhase.SWAPPING, 0.0)

    assert guarded.tick() is True

    assert guarded.store.current_journal is None
    assert guarded.runtime.running_version == "v1.0"
    assert guarded.telemetry.states == ["FAILED"]


def test_no_action_while_the_service_is_busy(guarded: Guarded) -> None:
    guarded.runtime.kill()
    guarded.service._in_flight = "v1.1"  # an update runs on another thread
    guarded.clock.advance(100)
    assert guarded.tick() is False
    guarded.service._in_flight = None
    assert guarded.runtime.calls == []


def test_a_new_version_starts_with_a_clean_backoff(guarded: Guarded) -> None:
    for _ in range(4):
        guarded.runtime.kill()
        guarded.tick_until_restart()
    assert guarded.watchdog.backoff.crash_looping

    guarded.service.handle_request(guarded.request("v1.1"))
    guarded.tick()

    assert guarded.watchdog.backoff.failures == 0
    assert states(guarded)[-1]["controller_state"] == "RUNNING"
    guarded.runtime.kill()
    assert guarded.tick_until_restart() == 2


def test_engine_down_is_not_an_action(guarded: Guarded) -> None:
    guarded.runtime.unavailable = True

    assert guarded.tick() is False


def test_rate_limit_caps_restarts_per_hour() -> None:
    world = Guarded()
    world.watchdog = Watchdog(
        world.runtime,
        world.store,
        world.telemetry,
        world.clock,
        world.service,
        WatchdogSettings(
            backoff=BackoffPolicy(initial_s=1, factor=1, max_s=1, max_restarts_per_hour=3)
        ),
    )
    waits = []
    for _ in range(4):
        world.runtime.kill()
        waits.append(world.tick_until_restart())

    assert waits[:3] == [1, 1, 1]
    assert waits[3] > 3000
