"""An assignment starts at a random moment of the update start window; a newer one or an
unassignment during the wait behaves as for a queued update; nothing else ever waits."""

from __future__ import annotations

import math
import random
import threading

import pytest

from teg_ota.app.exclusive import Exclusive
from teg_ota.app.gateway import Gateway
from teg_ota.app.start_spread import SLICE_S, SUPERSEDED, StartSpread
from teg_ota.domain.core.ota_messages import OtaDeleted
from teg_ota.domain.model.outcome import Outcome
from teg_ota.domain.model.settings import WatchdogSettings
from teg_ota.domain.services.watchdog import Watchdog

from .fakes import FakeClock
from .test_update_service import SUCCESS, World, tag

WINDOW_S = 5.0
SPREAD_THREAD = "teg-ota-start-spread"


class HeldSpreadClock(FakeClock):
    """A fake clock on which the spread's own thread sleeps until ``release()``; every
    other sleep (the update's) passes at once, as on a FakeClock."""

    def __init__(self) -> None:
        super().__init__()
        self._released = threading.Event()
        self.spread_sleeping = threading.Event()

    def sleep(self, seconds: float) -> None:
        if threading.current_thread().name == SPREAD_THREAD:
            self.spread_sleeping.set()
            assert self._released.wait(10)
        super().sleep(seconds)

    def release(self) -> None:
        self._released.set()


def gateway_with_spread(world: World, seed: int = 7) -> Gateway:
    watchdog = Watchdog(
        world.runtime,
        world.store,
        world.telemetry,
        world.clock,
        world.service,
        WatchdogSettings(),
    )
    spread = StartSpread(world.clock, WINDOW_S, random.Random(seed))
    return Gateway(world.service, watchdog, world.runtime, world.store, Exclusive(), spread)


def held_world() -> tuple[World, HeldSpreadClock]:
    world = World()
    clock = HeldSpreadClock()
    clock.wall, clock.mono = world.clock.wall, world.clock.mono
    world.clock = clock
    world.runtime.clock = clock
    world.service = world.new_service()
    return world, clock


# --------------------------------------------------------------------- the wait itself


@pytest.mark.parametrize("seed", range(5))
def test_the_delay_is_uniform_in_the_window_and_slept_on_the_clock(seed: int) -> None:
    clock = FakeClock()
    spread = StartSpread(clock, WINDOW_S, random.Random(seed))
    started: list[float] = []

    ticket = spread.begin()
    assert spread.wait(ticket, then=lambda: started.append(clock.mono)) is None

    assert ticket.delay_s == pytest.approx(WINDOW_S * random.Random(seed).random())
    assert 0 <= ticket.delay_s < WINDOW_S
    assert sum(clock.slept) == pytest.approx(ticket.delay_s)
    assert max(clock.slept, default=0) <= SLICE_S
    assert started == [pytest.approx(1000.0 + ticket.delay_s)]


def test_a_thousand_draws_cover_the_window() -> None:
    spread = StartSpread(FakeClock(), WINDOW_S, random.Random(3))
    delays = [spread.begin().delay_s for _ in range(1000)]
    assert min(delays) >= 0 and max(delays) < WINDOW_S
    assert min(delays) < 0.5 and max(delays) > 4.5  # spread over it, not bunched


def test_a_newer_assignment_supersedes_one_still_waiting() -> None:
    clock = FakeClock()
    spread = StartSpread(clock, WINDOW_S, random.Random(1))
    first = spread.begin()
    newer = spread.begin()  # arrives while the first one waits
    ran: list[str] = []

    assert spread.wait(first, then=lambda: ran.append("first")) == SUPERSEDED
    assert spread.wait(newer, then=lambda: ran.append("newer")) is None
    assert ran == ["newer"]


def test_an_unassignment_cancels_the_wait() -> None:
    clock = FakeClock()
    spread = StartSpread(clock, WINDOW_S, random.Random(1))
    ticket = spread.begin()

    assert spread.cancel("its package was unassigned")
    assert spread.wait(ticket, then=lambda: pytest.fail("it started")) == (
        "its package was unassigned"
    )
    assert not spread.cancel("again")  # nothing waits any more
    assert spread.wait(spread.begin()) is None  # the next assignment is not affected


def test_a_window_of_zero_means_at_once() -> None:
    clock = FakeClock()
    spread = StartSpread(clock, 0.0, random.Random(1))
    assert spread.begin().delay_s == 0.0
    with pytest.raises(ValueError):
        StartSpread(clock, -1.0)


# --------------------------------------------------------------- through the gateway


def test_a_library_assignment_waits_its_moment_then_updates() -> None:
    world = World()
    gateway = gateway_with_spread(world, seed=11)
    expected = WINDOW_S * random.Random(11).random()

    result = gateway.handle_request(world.request("v1.1"))

    assert result.outcome is Outcome.UPDATED
    assert world.telemetry.states == SUCCESS
    slices = math.ceil(expected / SLICE_S)  # the spread's sleeps come first
    assert sum(world.clock.slept[:slices]) == pytest.approx(expected)


def test_an_offered_assignment_replaced_during_its_wait_never_starts() -> None:
    world, clock = held_world()
    gateway = gateway_with_spread(world)

    gateway.offer(world.request("v1.1"))
    assert clock.spread_sleeping.wait(5)
    gateway.offer(world.request("v1.2"))  # latest wins, as for a queued update
    clock.release()

    assert gateway.wait_idle(10)
    assert world.runtime.running_version == "v1.2"
    assert f"build {tag('v1.1')}" not in world.runtime.calls
    assert world.telemetry.states == SUCCESS  # one update, v1.2's


def test_an_unassignment_during_the_wait_cancels_it_cleanly() -> None:
    world, clock = held_world()
    gateway = gateway_with_spread(world)

    gateway.offer(world.request("v1.1"))
    assert clock.spread_sleeping.wait(5)
    gateway.handle_deleted(OtaDeleted(keys=("sw_title", "sw_version")))
    clock.release()

    assert gateway.wait_idle(10)
    assert world.runtime.running_version == "v1.0"
    assert world.telemetry.states == []  # nothing was reported: nothing had started
    assert world.store.current_journal is None
    assert not any(call.startswith("build") for call in world.runtime.calls)


def test_operator_commands_rollback_and_recovery_do_not_wait_for_a_spread() -> None:
    world, clock = held_world()
    gateway = gateway_with_spread(world)
    gateway.offer(world.request("v1.1"))
    assert clock.spread_sleeping.wait(5)  # the assignment waits its moment ...

    # ... while the worker is free for everything else, at once (no spread sleep):
    assert gateway.update("v1.2").outcome is Outcome.UPDATED
    assert gateway.rollback().running_version == "v1.0"
    assert gateway.recover().outcome is Outcome.NOTHING_TO_RECOVER
    assert gateway.ensure_running().outcome is Outcome.ALREADY_RUNNING  # the start-up launch
    assert world.runtime.running_version == "v1.0"

    clock.release()  # then the assignment starts
    assert gateway.wait_idle(10)
    assert world.runtime.running_version == "v1.1"
