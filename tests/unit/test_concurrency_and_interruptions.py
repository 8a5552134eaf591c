"""Interruptions (engine outages, shutdown, crashes) and concurrent callers: the cases a
second review found, each pinned down with the in-memory fakes."""

from __future__ import annotations

import threading
from collections.abc import Mapping

import pytest

from teg_ota import compat
from teg_ota.app.settings import Settings
from teg_ota.domain.model.journal import JournalPhase, UpdateJournal
from teg_ota.domain.model.ota_state import OtaState
from teg_ota.domain.model.outcome import Outcome
from teg_ota.domain.model.settings import WatchdogSettings
from teg_ota.domain.services.watchdog import Watchdog

from .fakes import PREFIX, Behaviour
from .test_update_service import SUCCESS, World, slow_build, tag


@pytest.fixture
def world() -> World:
    return World()


def test_recover_acts_on_the_journal_as_it_is_once_it_holds_the_lock(world: World) -> None:
    building, release = slow_build(world)
    updater = threading.Thread(target=world.gateway.update, args=("v1.1",))
    updater.start()
    assert building.wait(5)
    recovered: list[Outcome] = []
    recoverer = threading.Thread(target=lambda: recovered.append(world.gateway.recover().outcome))
    recoverer.start()  # reads the in-flight journal, then waits for the lock

    release.set()
    updater.join(10)
    recoverer.join(10)

    assert recovered == [Outcome.NOTHING_TO_RECOVER]
    assert world.telemetry.states == SUCCESS


def test_a_left_over_journal_is_recovered_before_a_new_request_runs(world: World) -> None:
    world.runtime.add_image(tag("v1.1"), "v1.1", "2" * 40)
    world.store.current_journal = UpdateJournal(
        "v1.1",
        "v1.0",
        JournalPhase.ROLLING_BACK,
        0.0,
        reported=OtaState.UPDATING,
        error="v1.1 exited with code 3 within 10 s",
    )

    result = world.service.handle_request(world.request("v1.1"))

    assert result.outcome is Outcome.REFUSED  # the recovery remembered the observed failure
    assert world.telemetry.states == ["FAILED"]
    assert world.runtime.running_version == "v1.0"
    assert not any(call.startswith("build") for call in world.runtime.calls)


def test_engine_lost_in_the_health_window_blames_nothing_and_resumes(world: World) -> None:
    original = world.runtime.wait_for_exit

    def engine_goes_away(timeout_s: float):  # type: ignore[no-untyped-def]
        world.runtime.unavailable = True
        return original(timeout_s)

    world.runtime.wait_for_exit = engine_goes_away  # type: ignore[method-assign]

    world.service.handle_request(world.request("v1.1"))

    assert world.telemetry.terminal == []
    assert world.store.current_journal is not None
    assert world.store.current_journal.phase is JournalPhase.HEALTH_CHECK
    world.runtime.wait_for_exit = original  # type: ignore[method-assign]
    world.runtime.unavailable = False

    assert world.new_service().recover().outcome is Outcome.UPDATED
    assert world.telemetry.states == SUCCESS
    assert world.store.failed_version is None


def test_an_engine_restart_that_stopped_the_new_controller_is_retried_later(
    world: World,
) -> None:
    original = world.runtime.wait_for_exit

    def engine_restarts(timeout_s: float):  # type: ignore[no-untyped-def]
        world.runtime.unavailable = True  # dockerd restarts; its containers stop
        return original(timeout_s)

    world.runtime.wait_for_exit = engine_restarts  # type: ignore[method-assign]
    world.service.handle_request(world.request("v1.1"))
    world.runtime.wait_for_exit = original  # type: ignore[method-assign]
    world.runtime.unavailable = False
    world.runtime.kill(exit_code=143)

    world.new_service().recover()

    assert world.runtime.running_version == "v1.0"
    assert [r.state.value for r in world.telemetry.terminal] == ["FAILED"]
    assert world.store.failed_version is None  # an interruption: the version is not blamed
    assert world.new_service().handle_request(world.request("v1.1")).outcome is Outcome.UPDATED


def test_shutdown_lets_preparation_finish_but_starts_no_swap(world: World) -> None:
    def stop_requested(line: str) -> None:
        if line == "Successfully built":
            world.service.hold_swaps()

    result = world.service.handle_request(world.request("v1.1"), on_progress=stop_requested)

    assert result.outcome is Outcome.FAILED
    assert "stop" not in world.runtime.calls
    assert world.runtime.running_version == "v1.0"
    assert world.telemetry.states == ["DOWNLOADING", "DOWNLOADED", "VERIFIED"]
    assert world.store.current_journal is not None
    assert world.store.current_journal.phase is JournalPhase.PREPARING

    restarted = world.new_service()
    restarted.recover()
    assert [r.state.value for r in world.telemetry.terminal] == ["FAILED"]
    assert restarted.handle_request(world.request("v1.1")).outcome is Outcome.UPDATED


def test_every_operation_runs_on_the_one_worker_thread_never_a_callers(world: World) -> None:
    building, release = slow_build(world)
    threads: list[str] = []
    original_run = world.runtime.run_controller

    def record(image: str, labels: Mapping[str, str]) -> None:
        threads.append(threading.current_thread().name)
        original_run(image, labels)

    world.runtime.run_controller = record  # type: ignore[method-assign]
    updater = threading.Thread(
        target=world.gateway.update, args=("v1.1",), name="operator"
    )
    updater.start()
    assert building.wait(5)

    assert world.gateway.handle_request(world.request("v1.2")).outcome is Outcome.DEFERRED
    release.set()
    updater.join(10)
    assert world.gateway.wait_idle(10)

    assert world.runtime.running_version == "v1.2"
    assert threads == ["teg-ota-worker", "teg-ota-worker"]


def test_watchdog_retries_a_waiting_recovery_with_backoff_not_in_a_loop(world: World) -> None:
    world.store.current_journal = UpdateJournal("v1.1", "v1.0", JournalPhase.SWAPPING, 0.0)
    attempts: list[float] = []

    def engine_still_broken():  # type: ignore[no-untyped-def]
        attempts.append(world.clock.monotonic())

    world.service.recover = engine_still_broken  # type: ignore[assignment,method-assign]
    watchdog = Watchdog(
        world.runtime, world.store, world.telemetry, world.clock, world.service, WatchdogSettings()
    )

    for _ in range(100):
        watchdog.restart_controller_if_needed()
        world.clock.advance(0.1)  # 10 s of ticks as fast as an exit watcher could send them

    assert len(attempts) <= 4  # 2 s, 4 s, 8 s apart with the default policy
    assert len(attempts) >= 2


def test_compat_is_configured_once(world: World) -> None:
    settings = Settings(image_prefix=PREFIX)
    compat.configure(
        settings,
        runtime=world.runtime,
        repo=world.repo,
        telemetry=world.telemetry,
        store=world.store,
        clock=world.clock,
    )
    try:
        with pytest.raises(compat.AlreadyConfigured):
            compat.configure(settings, telemetry=world.telemetry)
    finally:
        compat._container = None


def test_compat_configure_recovers_an_interrupted_update(world: World) -> None:
    world.runtime.behaviours["v1.1"] = Behaviour()
    world.store.current_journal = UpdateJournal(
        "v1.1", "v1.0", JournalPhase.PREPARING, 0.0, reported=OtaState.DOWNLOADING
    )
    try:
        compat.configure(
            Settings(image_prefix=PREFIX),
            runtime=world.runtime,
            repo=world.repo,
            telemetry=world.telemetry,
            store=world.store,
            clock=world.clock,
        )
    finally:
        compat._container = None

    assert world.store.current_journal is None
    assert world.telemetry.states == ["FAILED"]
