"""The loop guard (issue 15, "Attempt limit"): a version whose swap or health gate was
interrupted ``TEG_MAX_INTERRUPTED_ATTEMPTS`` times in a row is remembered as failed, rolled
back and reported FAILED; fewer interruptions are not held against it. The count outlives
the journal (each interrupted attempt's rollback clears that), so it is the store's."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from loguru import logger

from teg_ota.adapters.file_version_store import INTERRUPTED_FILE, FileVersionStore
from teg_ota.app.settings import ConfigError, load_settings
from teg_ota.domain.core import recovery
from teg_ota.domain.model.journal import InterruptedAttempts, JournalPhase
from teg_ota.domain.model.ota_state import OtaState
from teg_ota.domain.model.outcome import Outcome, UpdateResult
from teg_ota.domain.model.settings import UpdateSettings
from teg_ota.ports import VersionStoreError

from .fakes import Behaviour, FakeStore, SimulatedCrash
from .test_update_service import SUCCESS, World

LOOP = "interrupted 3 times during its swap: possible reboot loop"


def interrupted_attempt(
    world: World, version: str = "v1.1", *, at: JournalPhase, power_cut: bool
) -> UpdateResult:
    """One attempt at ``version`` interrupted right after journalling ``at`` (teg-ota
    killed; with ``power_cut`` the containers stop too), then the recovery of a fresh
    process."""
    world.store.crash_before = at
    with pytest.raises(SimulatedCrash):
        world.service.handle_request(world.request(version))
    if power_cut and world.runtime.container is not None:
        world.runtime.container.running = False
    world.clock.advance(60)
    world.service = world.new_service()
    return world.service.recover()


# ------------------------------------------------------------------- the pure rule


def test_the_reason_names_the_count() -> None:
    assert recovery.interrupted_too_often(3) == LOOP


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (None, 0),
        (InterruptedAttempts("v1.1", 2), 2),
        (InterruptedAttempts("v1.2", 2), 0),
    ],
)
def test_only_the_targets_own_count_carries_over(
    record: InterruptedAttempts | None, expected: int
) -> None:
    assert recovery.previous_interruptions(record, "v1.1") == expected


def test_a_limit_of_one_fails_the_first_interruption() -> None:
    world = World(max_interrupted_attempts=1)
    result = interrupted_attempt(world, at=JournalPhase.SWAPPING, power_cut=False)

    assert result.outcome is Outcome.ROLLED_BACK
    failed = world.store.failed_version
    assert failed is not None
    assert "interrupted 1 times during its swap: possible reboot loop" in failed.error


# --------------------------------------------------------------- through the service


def test_the_third_interruption_in_a_row_fails_the_version() -> None:
    """A version that reboots the gateway in its health gate: the first two recoveries roll
    back without blame (the re-sent assignment retries), the third remembers it."""
    world = World()
    for count in (1, 2):
        result = interrupted_attempt(world, at=JournalPhase.HEALTH_CHECK, power_cut=True)
        assert result.outcome is Outcome.ROLLED_BACK
        assert world.store.failed_version is None, "an interruption is not held against it"
        assert world.store.interrupted == InterruptedAttempts("v1.1", count)
        assert world.store.current_journal is None, "the journal went; the count did not"
        assert LOOP not in (world.telemetry.terminal[-1].error or "")
    reports = len(world.telemetry.terminal)

    result = interrupted_attempt(world, at=JournalPhase.HEALTH_CHECK, power_cut=True)

    assert result.outcome is Outcome.ROLLED_BACK
    assert world.runtime.running_version == "v1.0"
    assert world.store.launched == "v1.0"
    failed = world.store.failed_version
    assert failed is not None and failed.version == "v1.1"
    assert failed.error == (f"update from v1.0 to v1.1 failed: {LOOP}; rolled back to v1.0")
    terminal = world.telemetry.terminal[reports:]
    assert [report.state for report in terminal] == [OtaState.FAILED]
    assert terminal[0].error == failed.error
    assert terminal[0].current_version == "v1.0"
    assert world.store.interrupted is None, "forgotten: the failure memory holds it now"
    assert world.store.current_journal is None

    # ThingsBoard re-sends the assignment: refused, nothing swapped.
    calls = len(world.runtime.calls)
    again = world.service.handle_request(world.request("v1.1"))
    assert again.outcome is Outcome.REFUSED
    assert "stop" not in world.runtime.calls[calls:]
    assert world.runtime.running_version == "v1.0"


def test_interruptions_in_the_swap_count_the_same() -> None:
    world = World()
    for _ in range(2):
        interrupted_attempt(world, at=JournalPhase.SWAPPING, power_cut=False)
    assert world.store.interrupted == InterruptedAttempts("v1.1", 2)

    result = interrupted_attempt(world, at=JournalPhase.SWAPPING, power_cut=True)

    assert result.outcome is Outcome.ROLLED_BACK
    assert world.runtime.running_version == "v1.0"
    assert world.store.failed_version is not None
    assert LOOP in world.store.failed_version.error


def test_a_killed_runner_at_the_limit_rolls_back_even_a_running_new_controller() -> None:
    """teg-ota killed in the gate, the controller still up (the row that resumes the gate
    below the limit): at the limit it is rolled back and remembered all the same."""
    world = World()
    world.store.interrupted = InterruptedAttempts("v1.1", 2)

    result = interrupted_attempt(world, at=JournalPhase.HEALTH_CHECK, power_cut=False)

    assert result.outcome is Outcome.ROLLED_BACK
    assert world.runtime.running_version == "v1.0"
    assert world.store.failed_version is not None
    assert LOOP in world.store.failed_version.error
    assert world.telemetry.terminal[-1].state is OtaState.FAILED


def test_a_resumed_gate_that_passes_clears_the_count() -> None:
    world = World()
    world.store.interrupted = InterruptedAttempts("v1.1", 1)

    result = interrupted_attempt(world, at=JournalPhase.HEALTH_CHECK, power_cut=False)

    assert result.outcome is Outcome.UPDATED
    assert world.runtime.running_version == "v1.1"
    assert world.telemetry.states == SUCCESS
    assert world.store.interrupted is None


def test_a_count_for_another_version_starts_again_at_one() -> None:
    world = World()
    world.store.interrupted = InterruptedAttempts("v1.2", 2)

    result = interrupted_attempt(world, at=JournalPhase.HEALTH_CHECK, power_cut=True)

    assert result.outcome is Outcome.ROLLED_BACK
    assert world.store.failed_version is None
    assert world.store.interrupted == InterruptedAttempts("v1.1", 1)


@pytest.mark.parametrize("version", ["v1.1", "v1.2"])
def test_a_success_clears_the_count(version: str) -> None:
    world = World()
    world.store.interrupted = InterruptedAttempts("v1.1", 2)

    result = world.service.handle_request(world.request(version))

    assert result.outcome is Outcome.UPDATED
    assert world.store.interrupted is None


def test_other_interruptions_are_not_counted() -> None:
    """Only the swap and the gate: an interrupted preparation never touched the controller,
    and an interrupted rollback was decided already."""
    world = World()
    interrupted_attempt(world, at=JournalPhase.PREPARING, power_cut=True)
    assert world.store.interrupted is None

    world.runtime.behaviours["v1.2"] = Behaviour(exits_after_s=2)
    interrupted_attempt(world, "v1.2", at=JournalPhase.ROLLING_BACK, power_cut=False)
    assert world.store.interrupted is None


def test_a_failure_observed_against_the_version_ends_the_streak() -> None:
    """ "In a row": an attempt that ran to its verdict (here the health gate saw it exit)
    was not interrupted, so the streak of interruptions is over."""
    world = World()
    world.store.interrupted = InterruptedAttempts("v1.1", 1)
    world.runtime.behaviours["v1.1"] = Behaviour(exits_after_s=2, exit_code=3)

    result = world.service.handle_request(world.request("v1.1"))

    assert result.outcome is Outcome.ROLLED_BACK
    assert world.store.failed_version is not None
    assert world.store.interrupted is None


# ------------------------------------------------------------ when the store fails


class CountUnwritable(FakeStore):
    """Only the count cannot be written (the port allows it: disk full, read-only)."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts: list[InterruptedAttempts | None] = []

    def set_interrupted_attempts(self, record: InterruptedAttempts | None) -> None:
        self.attempts.append(record)
        raise VersionStoreError("the gateway cannot write /data/interrupted_attempts.json")


class CountUnreadable(FakeStore):
    def interrupted_attempts(self) -> InterruptedAttempts | None:
        raise VersionStoreError("the gateway cannot read /data/interrupted_attempts.json")


def world_with(store: FakeStore) -> World:
    world = World()
    store.launched, store.good = world.store.launched, world.store.good
    world.store = store
    world.service = world.new_service()
    return world


def test_a_count_the_store_refuses_never_stops_the_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = world_with(CountUnwritable())

    with caplog.at_level(logging.ERROR):
        result = interrupted_attempt(world, at=JournalPhase.HEALTH_CHECK, power_cut=True)

    assert result.outcome is Outcome.ROLLED_BACK
    assert world.runtime.running_version == "v1.0"
    assert [report.state for report in world.telemetry.terminal] == [OtaState.FAILED]
    assert world.store.current_journal is None
    assert isinstance(world.store, CountUnwritable)
    assert world.store.attempts == [InterruptedAttempts("v1.1", 1)]
    assert "could not count the interrupted attempt" in caplog.text


def test_a_count_the_store_cannot_read_counts_from_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = world_with(CountUnreadable())

    with caplog.at_level(logging.ERROR):
        result = interrupted_attempt(world, at=JournalPhase.HEALTH_CHECK, power_cut=True)

    assert result.outcome is Outcome.ROLLED_BACK
    assert world.store.interrupted == InterruptedAttempts("v1.1", 1)
    assert "cannot read how often v1.1 was interrupted" in caplog.text


def test_a_read_only_store_at_the_limit_still_fails_and_rolls_back() -> None:
    """Every write refused (``fail_writes``): the version cannot be remembered, but the
    rollback happens and FAILED says why."""
    world = World()
    world.store.interrupted = InterruptedAttempts("v1.1", 2)
    world.store.crash_before = JournalPhase.HEALTH_CHECK
    with pytest.raises(SimulatedCrash):
        world.service.handle_request(world.request("v1.1"))
    world.store.fail_writes = True

    result = world.new_service().recover()

    assert result.outcome is Outcome.ROLLED_BACK
    assert world.runtime.running_version == "v1.0"
    failed = world.telemetry.terminal[-1]
    assert failed.state is OtaState.FAILED and LOOP in (failed.error or "")


def test_a_success_whose_count_cannot_be_cleared_is_still_a_success() -> None:
    world = world_with(CountUnwritable())

    result = world.service.handle_request(world.request("v1.1"))

    assert result.outcome is Outcome.UPDATED
    assert world.telemetry.states == SUCCESS


# ---------------------------------------------------------------- the file store


def warnings_of(action: object) -> list[str]:
    messages: list[str] = []
    logger.enable("teg_ota")
    sink = logger.add(lambda m: messages.append(m.record["message"]), level="WARNING")
    try:
        assert callable(action)
        action()
    finally:
        logger.remove(sink)
        logger.disable("teg_ota")  # the library's default
    return messages


def test_the_file_store_keeps_the_count_across_a_restart(tmp_path: Path) -> None:
    store = FileVersionStore(tmp_path)
    assert store.interrupted_attempts() is None

    store.set_interrupted_attempts(InterruptedAttempts("v1.1", 2))

    assert json.loads((tmp_path / INTERRUPTED_FILE).read_text()) == {
        "version": "v1.1",
        "count": 2,
    }
    assert FileVersionStore(tmp_path).interrupted_attempts() == InterruptedAttempts("v1.1", 2)
    store.set_interrupted_attempts(None)
    assert not (tmp_path / INTERRUPTED_FILE).exists()
    assert FileVersionStore(tmp_path).interrupted_attempts() is None
    store.set_interrupted_attempts(None)  # nothing to forget: no error


def test_the_file_store_refuses_an_invalid_version(tmp_path: Path) -> None:
    store = FileVersionStore(tmp_path)
    with pytest.raises(VersionStoreError):
        store.set_interrupted_attempts(InterruptedAttempts("-bad", 1))
    assert not (tmp_path / INTERRUPTED_FILE).exists()
    assert store.interrupted_attempts() is None


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[1, 2]",
        '{"version": "v1.1"}',
        '{"version": "v1.1", "count": "2"}',
        '{"version": "v1.1", "count": true}',
        '{"version": "v1.1", "count": 0}',
        '{"version": 5, "count": 2}',
        '{"version": "../../x", "count": 2}',
    ],
)
def test_a_corrupt_count_reads_as_none_with_a_warning(tmp_path: Path, content: str) -> None:
    (tmp_path / INTERRUPTED_FILE).write_text(content)
    found: list[InterruptedAttempts | None] = []

    messages = warnings_of(lambda: found.append(FileVersionStore(tmp_path).interrupted_attempts()))

    assert found == [None]
    assert any(INTERRUPTED_FILE in message for message in messages), messages


def test_a_corrupt_count_is_replaced_by_the_next_one(tmp_path: Path) -> None:
    (tmp_path / INTERRUPTED_FILE).write_text("{")
    store = FileVersionStore(tmp_path)
    store.set_interrupted_attempts(InterruptedAttempts("v1.1", 1))
    assert FileVersionStore(tmp_path).interrupted_attempts() == InterruptedAttempts("v1.1", 1)


def test_a_count_the_disk_refuses_is_still_the_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileVersionStore(tmp_path)
    store.set_interrupted_attempts(InterruptedAttempts("v1.1", 1))

    def refused(*_: object) -> None:
        raise VersionStoreError("the gateway cannot write /data: Read-only file system")

    monkeypatch.setattr(store._files, "remove", refused)
    monkeypatch.setattr(store._files, "write", refused)
    with pytest.raises(VersionStoreError):
        store.set_interrupted_attempts(InterruptedAttempts("v1.1", 2))
    assert store.interrupted_attempts() == InterruptedAttempts("v1.1", 2)
    with pytest.raises(VersionStoreError):
        store.set_interrupted_attempts(None)
    assert store.interrupted_attempts() is None
    assert FileVersionStore(tmp_path).interrupted_attempts() == InterruptedAttempts("v1.1", 1)


def test_the_model_refuses_a_count_below_one() -> None:
    with pytest.raises(ValueError, match=">= 1"):
        InterruptedAttempts("v1.1", 0)
    assert InterruptedAttempts.from_dict({"version": "v1.1", "count": 3}).to_dict() == {
        "version": "v1.1",
        "count": 3,
    }


# ------------------------------------------------------------------------ the setting


BASE = {"GATEWAY_DATA_PATH": "/data", "CONTROLLER_GIT_PATH": "/repo"}


def test_the_limit_defaults_to_three_and_reaches_the_domain() -> None:
    assert UpdateSettings().max_interrupted_attempts == 3
    settings = load_settings({**BASE, "TEG_MAX_INTERRUPTED_ATTEMPTS": "5"})
    assert settings.update_settings().max_interrupted_attempts == 5
    assert load_settings(BASE).update_settings().max_interrupted_attempts == 3


@pytest.mark.parametrize("raw", ["0", "-1", "two", "2.5", ""])
def test_a_bad_limit_is_a_clear_config_error(raw: str) -> None:
    with pytest.raises(ConfigError, match=r"TEG_MAX_INTERRUPTED_ATTEMPTS=.*whole number >= 1"):
        load_settings({**BASE, "TEG_MAX_INTERRUPTED_ATTEMPTS": raw})


def test_the_domain_settings_refuse_a_limit_below_one() -> None:
    with pytest.raises(ValueError, match="max interrupted attempts"):
        UpdateSettings(max_interrupted_attempts=0)
