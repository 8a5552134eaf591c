"""An embedding product's own ContainerRuntime written before issue 14 has no
``replace_controller``, ``prepare_restart`` or ``discard_prepared``: updates, rollbacks,
restarts and recovery still work with it, stopping before they start (the old order)."""

from __future__ import annotations

from teg_ota.domain.model.journal import JournalPhase, UpdateJournal
from teg_ota.domain.model.outcome import Outcome
from teg_ota.domain.model.settings import WatchdogSettings
from teg_ota.domain.services.update_service import UpdateService
from teg_ota.domain.services.watchdog import Watchdog

from .fakes import FakeRepoSource, FakeRuntime
from .test_update_service import World

NEW_METHODS = frozenset({"replace_controller", "prepare_restart", "discard_prepared"})


class RuntimeBeforeIssue14:
    """The fake runtime with only the methods the port had before issue 14."""

    def __init__(self, inner: FakeRuntime) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> object:
        if name in NEW_METHODS:
            raise AttributeError(name)
        return getattr(self._inner, name)


def _service(world: World) -> UpdateService:
    old = RuntimeBeforeIssue14(world.runtime)
    return UpdateService(
        old,  # type: ignore[arg-type]
        FakeRepoSource(world.repo), world.telemetry, world.store, world.clock, world.settings,
    )  # fmt: skip


def test_an_update_stops_then_starts() -> None:
    world = World()
    service = _service(world)

    result = service.handle_request(world.request("v1.1"))

    assert result.outcome is Outcome.UPDATED
    assert world.runtime.running_version == "v1.1"
    assert world.store.failed_version is None


def test_recovery_needs_no_discard() -> None:
    world = World()
    world.store.current_journal = UpdateJournal(
        target="v1.1", previous="v1.0", phase=JournalPhase.SWAPPING, started_at=1.0
    )
    service = _service(world)

    result = service.recover()

    assert result.outcome is not Outcome.NOTHING_TO_RECOVER
    assert "recovery failed" not in (result.error or "")  # the table's row, not the drop
    assert world.telemetry.states == ["FAILED"]  # the interrupted swap, reported once
    assert world.runtime.running_version == "v1.0"
    assert world.store.current_journal is None


def test_a_restart_needs_no_preparation() -> None:
    world = World()
    old = RuntimeBeforeIssue14(world.runtime)
    watchdog = Watchdog(
        old,  # type: ignore[arg-type]
        world.store, world.telemetry, world.clock, _service(world), WatchdogSettings(),
    )  # fmt: skip
    world.runtime.kill(exit_code=1)

    for _ in range(5):
        watchdog.tick()
        world.clock.advance(30)

    assert world.runtime.running_version == "v1.0"
