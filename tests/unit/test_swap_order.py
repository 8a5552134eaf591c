"""The swap's order as the domain asks for it: the replacement is made before the old
controller stops, the health grace runs from the new one's start, a rollback rebuilds
before it stops anything, recovery discards what an interrupted swap left, and the
watchdog lets the runtime prepare a restart while it waits out the delay."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest

from teg_ota.domain.model.journal import JournalPhase, UpdateJournal
from teg_ota.domain.model.outcome import Outcome
from teg_ota.domain.model.settings import WatchdogSettings
from teg_ota.domain.services.watchdog import Watchdog

from .fakes import Behaviour
from .test_update_service import World, tag


@pytest.fixture
def world() -> World:
    return World()


def test_an_update_replaces_the_running_controller_in_one_call(world: World) -> None:
    replaced: list[tuple[str, float]] = []
    original = world.runtime.replace_controller

    def replace(tag_: str, labels: Mapping[str, str], grace_s: float) -> None:
        replaced.append((tag_, grace_s))
        original(tag_, labels, grace_s)

    world.runtime.replace_controller = replace  # type: ignore[method-assign]

    result = world.service.handle_request(world.request("v1.1"))

    assert result.outcome is Outcome.UPDATED
    assert replaced == [(tag("v1.1"), world.settings.stop_grace_s)]
    assert world.runtime.calls[-3:-1] == ["stop", f"run {tag('v1.1')}"]


def _grace_waited(world: World, after_swap: Callable[[], None]) -> float:
    """Update to v1.1 with ``after_swap`` run once the swap call returns; the timeout the
    health gate then waited for an exit (the grace it counted)."""
    original, original_wait = world.runtime.replace_controller, world.runtime.wait_for_exit
    waits: list[float] = []

    def swap(tag_: str, labels: Mapping[str, str], grace_s: float) -> None:
        original(tag_, labels, grace_s)
        after_swap()

    def wait(timeout_s: float):  # type: ignore[no-untyped-def]
        waits.append(timeout_s)
        return original_wait(timeout_s)

    world.runtime.replace_controller = swap  # type: ignore[method-assign]
    world.runtime.wait_for_exit = wait  # type: ignore[method-assign]
    assert world.service.handle_request(world.request("v1.1")).outcome is Outcome.UPDATED
    return waits[0]


def test_the_grace_counts_from_the_new_controllers_start(world: World) -> None:
    """The old one makes way and the new one takes its name after the start: that time is
    part of the grace, never more than the call took."""

    def renames() -> None:
        world.clock.advance(0.25)  # after the start: the renames

    waited = _grace_waited(world, renames)

    assert abs(waited - (world.settings.health_grace_s - 0.25)) < 1e-6


def test_a_clock_step_never_shortens_the_grace_by_more_than_the_swap_took(
    world: World,
) -> None:
    def clock_jumps() -> None:
        world.clock.wall += 3600  # the wall clock steps; the monotonic one does not

    assert _grace_waited(world, clock_jumps) == world.settings.health_grace_s


def test_a_rollback_rebuilds_a_missing_image_before_it_stops_the_failing_one() -> None:
    world = World()
    world.runtime.behaviours["v1.1"] = Behaviour(exits_after_s=None)
    assert world.service.handle_request(world.request("v1.1")).outcome is Outcome.UPDATED
    world.runtime.remove_image(tag("v1.0"))
    world.store.write_journal(
        UpdateJournal(
            target="v1.1", previous="v1.0", phase=JournalPhase.ROLLING_BACK, started_at=0.0
        )
    )
    calls = len(world.runtime.calls)

    result = world.service.recover()

    assert result.outcome is Outcome.ROLLED_BACK and result.running_version == "v1.0"
    after = world.runtime.calls[calls:]
    assert after.index(f"build {tag('v1.0')}") < after.index("stop"), after
    assert world.runtime.running_version == "v1.0"


def test_recovery_discards_what_an_interrupted_swap_left_first(world: World) -> None:
    world.store.write_journal(
        UpdateJournal(target="v1.1", previous="v1.0", phase=JournalPhase.SWAPPING, started_at=0.0)
    )

    world.service.recover()

    assert world.runtime.prepared_discards == 1
    assert world.runtime.running_version == "v1.0"


def test_no_journal_discards_nothing(world: World) -> None:
    assert world.service.recover().outcome is Outcome.NOTHING_TO_RECOVER
    assert world.runtime.prepared_discards == 0


def test_the_watchdog_prepares_the_restart_while_it_waits(world: World) -> None:
    watchdog = Watchdog(
        world.runtime, world.store, world.telemetry, world.clock, world.service, WatchdogSettings()
    )
    world.runtime.kill(exit_code=1)

    assert watchdog.restart_controller_if_needed() is False  # the first delay starts
    assert world.runtime.restarts_prepared == 1
    world.clock.advance(watchdog.seconds_until_restart())
    assert watchdog.restart_controller_if_needed() is True
    assert world.runtime.running_version == "v1.0"
