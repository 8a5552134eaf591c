"""The swap waits for the controller's update lock and the maintenance windows (issue 15):
prepared at once, swapped when allowed; ThingsBoard told why (``update_deferred``)."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from zoneinfo import ZoneInfo

from teg_ota.domain.model.outcome import Outcome
from teg_ota.domain.model.settings import UpdateSettings
from teg_ota.domain.services.swap_gate import DEFERRED_KEY
from teg_ota.domain.services.update_service import UpdateService

from .fakes import FakeClock, FakeRepoSource
from .test_update_service import World, tag


class HookedClock(FakeClock):
    """Calls ``hooks[i](clock)`` after each sleep (the controller acting meanwhile)."""

    def __init__(self) -> None:
        super().__init__()
        self.hooks: list[Callable[[HookedClock], None]] = []

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        for hook in list(self.hooks):
            hook(self)


class FakeLock:
    """The controller holds it until ``held_until`` (monotonic); records teg-ota's holds."""

    def __init__(self, calls: list[str], clock: FakeClock, held_until: float | None) -> None:
        self.calls, self.clock, self.held_until = calls, clock, held_until
        self.ours = False

    @property
    def where(self) -> str:
        return "/data/update.lock"

    def try_acquire(self) -> bool:
        if self.ours:
            return True
        if self.held_until is not None and self.clock.monotonic() < self.held_until:
            return False
        self.ours = True
        self.calls.append("lock")
        return True

    def release(self) -> None:
        if self.ours:
            self.ours = False
            self.calls.append("unlock")


class GatedWorld(World):
    def __init__(self, held_s: float | None = None, **settings: object) -> None:
        self.held_s = held_s
        super().__init__(**settings)

    def new_service(self) -> UpdateService:
        if not isinstance(self.clock, HookedClock):
            self.clock = HookedClock()
            self.runtime.clock = self.clock  # type: ignore[attr-defined]
        held_until = None if self.held_s is None else self.clock.monotonic() + self.held_s
        self.lock = FakeLock(self.runtime.calls, self.clock, held_until)
        return UpdateService(
            self.runtime,
            FakeRepoSource(self.repo),
            self.telemetry,
            self.store,
            self.clock,
            self.settings,
            update_lock=self.lock,
        )

    @property
    def deferred(self) -> list[object]:
        return [v[DEFERRED_KEY] for v in self.telemetry.values if DEFERRED_KEY in v]


def test_a_held_lock_defers_the_swap_never_the_preparation() -> None:
    world = GatedWorld(held_s=30)
    result = world.service.handle_request(world.request("v1.1"))

    assert result.outcome is Outcome.UPDATED
    calls = world.runtime.calls
    assert calls.index(f"build {tag('v1.1')}") < calls.index("lock") < calls.index("stop")
    assert calls.index("unlock") > calls.index("stop"), "held through the swap"
    assert world.clock.mono >= 1000 + 30, "the stop waited for the controller's release"
    assert world.deferred[0].startswith("waiting for the controller's update lock since ")
    assert world.deferred[-1] == ""
    states = world.telemetry.states
    assert states.index("VERIFIED") < states.index("UPDATING")


def test_a_free_lock_costs_nothing_and_says_nothing() -> None:
    world = GatedWorld(held_s=None)
    assert world.service.handle_request(world.request("v1.1")).outcome is Outcome.UPDATED
    assert world.deferred == []
    assert "lock" in world.runtime.calls


def test_the_maximum_wait_ends_in_failed_not_remembered_old_kept() -> None:
    world = GatedWorld(held_s=10_000, swap_max_wait_s=60)
    result = world.service.handle_request(world.request("v1.1"))

    assert result.outcome is Outcome.FAILED
    assert "waiting for the controller's update lock since" in (result.error or "")
    assert "gave up after 60 s" in (result.error or "")
    assert "stop" not in world.runtime.calls
    assert world.runtime.controller_state().version == "v1.0"
    assert world.store.failed() is None, "the version is not to blame"
    assert world.telemetry.terminal[-1].state.value == "FAILED"
    assert world.deferred[-1] == ""


def test_the_maximum_wait_can_force_the_swap() -> None:
    world = GatedWorld(held_s=10_000, swap_max_wait_s=60, swap_force_after_wait=True)
    assert world.service.handle_request(world.request("v1.1")).outcome is Outcome.UPDATED
    assert "lock" not in world.runtime.calls, "the controller still holds it"


def test_force_ends_a_wait_from_another_thread() -> None:
    world = GatedWorld(held_s=10_000)
    clock = world.clock
    assert isinstance(clock, HookedClock)
    clock.hooks.append(lambda c: world.service.force_swap("v1.1") if c.mono > 1100 else None)

    assert world.service.handle_request(world.request("v1.1")).outcome is Outcome.UPDATED
    assert 1100 <= clock.mono < 1200


def test_update_force_does_not_wait_and_forgets_the_force_after() -> None:
    world = GatedWorld(held_s=10_000)
    assert world.service.start_controller("v1.1", force=True).outcome is Outcome.UPDATED
    assert world.deferred == []
    world.telemetry.values.clear()
    result = world.service.start_controller("v1.0", force=False, on_progress=None)
    assert result.outcome is Outcome.UPDATED
    assert world.deferred, "the next, unforced update waits again for the lock"


def test_a_controller_that_stops_while_waiting_is_swapped_at_once() -> None:
    world = GatedWorld(held_s=10_000)
    clock = world.clock
    assert isinstance(clock, HookedClock)

    def crash(c: HookedClock) -> None:
        if c.mono > 1050 and world.runtime.container is not None:
            world.runtime.container.running = False

    clock.hooks.append(crash)
    assert world.service.handle_request(world.request("v1.1")).outcome is Outcome.UPDATED
    assert clock.mono < 1100


def test_a_newer_request_replaces_a_waiting_swap() -> None:
    world = GatedWorld(held_s=10_000)
    world.service.set_swap_interrupt(
        lambda target: "replaced by a newer request" if world.clock.mono > 1020 else None
    )
    result = world.service.handle_request(world.request("v1.1"))

    assert result.outcome is Outcome.FAILED
    assert "stop" not in world.runtime.calls
    assert world.deferred[-1] == ""
    assert world.telemetry.states[-1] == "VERIFIED", "nothing else claimed"
    assert world.store.journal() is None, "nothing left for recovery to report as FAILED"


def test_no_running_controller_means_no_wait() -> None:
    world = GatedWorld(held_s=10_000)
    assert world.runtime.container is not None
    world.runtime.container.running = False
    assert world.service.handle_request(world.request("v1.1")).outcome is Outcome.UPDATED
    assert world.deferred == []


def _at(text: str, zone: str) -> float:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp()


def test_outside_the_window_the_swap_waits_for_its_start() -> None:
    world = GatedWorld(update_windows="02:00-04:00", timezone=ZoneInfo("UTC"))
    world.clock.wall = _at("2026-12-03 13:00:00", "UTC")
    world.service = world.new_service()
    builds_at: list[float] = []
    original = world.runtime.build_image

    def build(*args, **kwargs):  # type: ignore[no-untyped-def]
        builds_at.append(world.clock.wall)
        original(*args, **kwargs)

    world.runtime.build_image = build  # type: ignore[method-assign]
    assert world.service.handle_request(world.request("v1.1")).outcome is Outcome.UPDATED

    assert builds_at == [_at("2026-12-03 13:00:00", "UTC")], "prepared at once"
    opened = _at("2026-12-04 02:00:00", "UTC") + world.settings.health_grace_s
    assert opened <= world.clock.wall < opened + 5, "swapped as it opened, then the grace"
    assert world.deferred[0] == (
        "waiting for the maintenance window (02:00-04:00); opens 2026-12-04 02:00:00 UTC"
    )


def test_a_window_follows_local_time_across_the_dst_change() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    world = GatedWorld(update_windows="02:00-04:00", timezone=berlin)
    world.clock.wall = _at("2026-03-28 12:00:00", "Europe/Berlin")  # the day before spring
    world.service = world.new_service()
    assert world.service.handle_request(world.request("v1.1")).outcome is Outcome.UPDATED
    # 02:00-03:00 does not exist on 29 March: the window opens at 03:00 CEST (01:00 UTC).
    opened = _at("2026-03-29 03:00:00", "Europe/Berlin") + world.settings.health_grace_s
    assert opened <= world.clock.wall < opened + 5


def test_settings_of_a_world_default_to_no_gate() -> None:
    assert UpdateSettings().update_windows == ""
    assert UpdateSettings().swap_max_wait_s is None


def test_an_unassignment_or_an_operators_command_ends_the_wait_without_a_swap() -> None:
    for resend in (False, True):
        world = GatedWorld(held_s=10_000)
        clock = world.clock
        assert isinstance(clock, HookedClock)
        clock.hooks.append(
            lambda c, w=world, r=resend: w.service.cancel_waiting_swap("why", resend=r)
            if c.mono > 1030
            else None
        )
        requests = world.telemetry.attribute_requests
        result = world.service.handle_request(world.request("v1.1"))

        assert result.outcome is Outcome.FAILED and result.error == "why"
        assert "stop" not in world.runtime.calls
        assert world.store.journal() is None
        assert world.deferred[-1] == ""
        asked = world.telemetry.attribute_requests - requests
        assert asked == (1 if resend else 0), "the assignment comes back behind the command"


def test_a_cancel_with_no_wait_in_progress_is_forgotten() -> None:
    world = GatedWorld(held_s=None)
    world.service.cancel_waiting_swap("nothing waits", resend=True)
    assert world.service.handle_request(world.request("v1.1")).outcome is Outcome.UPDATED


def test_the_maximum_wait_counts_inside_the_windows_only() -> None:
    world = GatedWorld(
        held_s=10_000_000,
        update_windows="02:00-03:00",
        timezone=ZoneInfo("UTC"),
        swap_max_wait_s=1800,
    )
    world.clock.wall = _at("2026-12-03 02:30:00", "UTC")
    world.service = world.new_service()
    result = world.service.handle_request(world.request("v1.1"))
    # 30 min of lock wait inside tonight's window, then the window closes; the next night
    # starts again from zero: it gives up at 02:30 the next day, not at 02:00.
    assert result.outcome is Outcome.FAILED
    gave_up = _at("2026-12-04 02:30:00", "UTC")
    assert gave_up <= world.clock.wall < gave_up + 5, world.clock.wall


def test_an_engine_that_does_not_answer_keeps_the_wait() -> None:
    world = GatedWorld(held_s=120)
    clock = world.clock
    assert isinstance(clock, HookedClock)
    clock.hooks.append(lambda c: setattr(world.runtime, "unavailable", 1020 < c.mono < 1060))
    assert world.service.handle_request(world.request("v1.1")).outcome is Outcome.UPDATED


def test_an_operators_rollback_never_waits() -> None:
    world = GatedWorld(held_s=None)
    assert world.service.handle_request(world.request("v1.1")).outcome is Outcome.UPDATED
    world.lock.held_until = world.clock.monotonic() + 10_000
    result = world.service.rollback()
    assert result.outcome is Outcome.UPDATED
    assert world.runtime.controller_state().version == "v1.0"
    assert world.clock.mono < world.lock.held_until


def test_a_cancel_while_the_update_prepares_ends_its_wait_at_once() -> None:
    world = GatedWorld(held_s=10_000)
    original = world.runtime.build_image

    def build(*args, **kwargs):  # type: ignore[no-untyped-def]
        original(*args, **kwargs)
        world.service.cancel_waiting_swap("its package was unassigned", resend=False)

    world.runtime.build_image = build  # type: ignore[method-assign]
    result = world.service.handle_request(world.request("v1.1"))

    assert result.outcome is Outcome.FAILED and result.error == "its package was unassigned"
    assert "stop" not in world.runtime.calls
    assert world.clock.mono < 1010, "no wait"
