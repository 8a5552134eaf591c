"""``teg-ota status`` reads the engine and the store without the composition
(``teg_ota.app.status_view``); ``Gateway.status`` returns the same object, so what is
checked here is what both print."""

from __future__ import annotations

from teg_ota.app.container import build_gateway
from teg_ota.app.settings import Settings
from teg_ota.app.status_view import read_status
from teg_ota.domain.model.journal import FailedVersion, JournalPhase, UpdateJournal

from .fakes import PREFIX, FakeClock, FakeRepo, FakeRuntime, FakeStore, FakeTelemetry
from .test_update_service import C1, C2, tag

SETTINGS = Settings(sw_title="teg-controller", health_grace_s=5, image_prefix=PREFIX)


def _world() -> tuple[FakeClock, FakeRuntime, FakeStore]:
    clock = FakeClock()
    runtime, store = FakeRuntime(clock), FakeStore(default="v1.0")
    runtime.add_image(tag("v1.0"), "v1.0", C1)
    runtime.add_image(tag("v1.1"), "v1.1", C2)
    return clock, runtime, store


def test_a_running_controller_with_records() -> None:
    _, runtime, store = _world()
    runtime.start_existing(tag("v1.0"))
    store.launched = "v1.0"
    store.good_history = ["v1.0", "v0.9"]
    store.failed_version = FailedVersion("v1.1", "health gate failed: exited 3")
    store.current_journal = UpdateJournal(
        target="v1.1", previous="v1.0", phase=JournalPhase.PREPARING, started_at=1700.0
    )

    status = read_status(runtime, store).to_dict()

    assert status["running"] is True
    assert status["version"] == "v1.0"
    assert status["exit_code"] is None
    assert status["last_launched"] == "v1.0"
    assert status["known_good"] == "v1.0"
    assert (status["failed"], status["failed_error"]) == ("v1.1", "health gate failed: exited 3")
    assert isinstance(status["update"], dict) and status["update"]["target"] == "v1.1"
    assert status["engine_error"] is None


def test_an_exited_controller_shows_its_exit_code_not_a_health() -> None:
    _, runtime, store = _world()
    runtime.start_existing(tag("v1.1"))
    runtime.kill(exit_code=3)

    status = read_status(runtime, store)

    assert (status.running, status.version, status.exit_code) == (False, "v1.1", 3)
    assert status.health is None and status.started_at_ms is None


def test_the_library_and_the_cli_read_the_same_status() -> None:
    clock, runtime, store = _world()
    runtime.start_existing(tag("v1.0"))
    gateway = build_gateway(
        SETTINGS, clock=clock, runtime=runtime, repo=FakeRepo(), telemetry=FakeTelemetry(),
        store=store,
    )  # fmt: skip

    assert gateway.status() == read_status(runtime, store)


def test_an_unreachable_engine_is_reported_not_raised() -> None:
    runtime = FakeRuntime(FakeClock())
    runtime.unavailable = True

    status = read_status(runtime, FakeStore())

    assert status.engine_error == "Docker engine unreachable"
    assert status.running is False
    assert status.version is None
