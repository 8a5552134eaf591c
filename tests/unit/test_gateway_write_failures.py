"""A gateway that cannot write (disk full, read-only, something else at a file's path),
driven through the UpdateService: before the swap the update fails with the old controller
untouched; a success that cannot be recorded rolls back; a start-up launch keeps the
controller it started. None of these is the version's fault, so none is remembered."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from teg_ota.adapters.store_files import StoreDir
from teg_ota.domain.model.journal import Answer, FailedVersion, JournalPhase, UpdateJournal
from teg_ota.domain.model.outcome import Outcome
from teg_ota.ports import VersionStoreError

from .fakes import FakeStore
from .test_update_service import World, tag

CANNOT_WRITE = "the gateway cannot write"
BEFORE_SWAP = ["DOWNLOADING", "DOWNLOADED", "VERIFIED", "UPDATING"]


class UnwritableStore(FakeStore):
    """A FakeStore whose chosen writes fail exactly as the file store's do: each one is
    attempted through a real :class:`StoreDir` whose directory is a regular file."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__()
        blocked = tmp_path / "data"
        blocked.write_text("a file where the data directory should be")
        self._disk = StoreDir(blocked)
        self.journal_fails_at: set[JournalPhase] = set()
        self.launched_fails_for: set[str] = set()
        self.good_fails_for: set[str] = set()
        """Versions whose entry at the head of the known-good history cannot be written."""
        self.broken_after: JournalPhase | None = None
        """Every write fails once the journal entry of this phase is written."""
        self.broken = False
        self.set_failed_calls: list[FailedVersion | None] = []

    def _refuse(self, name: str) -> None:
        self._disk.write(name, b"")  # raises VersionStoreError("the gateway cannot write ...")
        raise AssertionError(f"{name} was written to a directory that is a file")

    def write_journal(self, journal: UpdateJournal) -> None:
        if self.broken or journal.phase in self.journal_fails_at:
            self._refuse("journal.json")
        super().write_journal(journal)
        if journal.phase is self.broken_after:
            self.broken = True

    def set_last_launched(self, version: str) -> None:
        if self.broken or version in self.launched_fails_for:
            self._refuse("last_launched")
        super().set_last_launched(version)

    def set_known_good_history(self, history: Sequence[str]) -> None:
        if self.broken or (history and history[0] in self.good_fails_for):
            self._refuse("known_good.json")
        super().set_known_good_history(history)

    def set_failed(self, failed: FailedVersion | None) -> None:
        self.set_failed_calls.append(failed)
        if self.broken:
            self._refuse("failed.json")
        super().set_failed(failed)

    def set_answered(self, answer: Answer | None) -> None:
        if self.broken:
            self._refuse("answered.json")
        super().set_answered(answer)

    def clear_journal(self) -> None:
        if self.broken:
            self._refuse("journal.json")
        super().clear_journal()

    @property
    def failed_targets(self) -> list[str]:
        return [call.version for call in self.set_failed_calls if call is not None]


@pytest.fixture
def store(tmp_path: Path) -> UnwritableStore:
    return UnwritableStore(tmp_path)


def world_with(store: FakeStore) -> World:
    """The usual world (v1.0 runs and is known good), over ``store``."""
    world = World()
    store.launched, store.good = world.store.launched, world.store.good
    world.store = store
    world.service = world.new_service()
    return world


def test_the_helper_fails_like_the_file_store(store: UnwritableStore) -> None:
    store.journal_fails_at = {JournalPhase.PREPARING}
    with pytest.raises(VersionStoreError, match=f"^{CANNOT_WRITE} .*journal.json: "):
        store.write_journal(UpdateJournal("v1.1", "v1.0", JournalPhase.PREPARING, 0.0))


# --------------------------------------------------------------- (a) before the swap


@pytest.mark.parametrize("phase", [JournalPhase.PREPARING, JournalPhase.SWAPPING])
def test_a_journal_write_failing_before_the_swap_fails_once_touching_nothing(
    store: UnwritableStore, phase: JournalPhase
) -> None:
    store.journal_fails_at = {phase}
    world = world_with(store)

    result = world.service.handle_request(world.request("v1.1"))

    assert result.outcome is Outcome.FAILED
    failed = world.telemetry.terminal
    assert [report.state.value for report in failed] == ["FAILED"]
    assert world.telemetry.states[-1] == "FAILED"
    assert failed[0].error is not None
    assert CANNOT_WRITE in failed[0].error
    assert failed[0].error.startswith("update to v1.1 failed: ")
    assert failed[0].error.endswith("; v1.0 kept running")
    assert failed[0].current_version == "v1.0"
    assert "stop" not in world.runtime.calls
    assert not [call for call in world.runtime.calls if call.startswith("run ")]
    assert world.runtime.running_version == "v1.0"
    assert "v1.1" not in store.failed_targets
    assert store.failed_version is None
    assert (store.launched, store.good) == ("v1.0", "v1.0")
    assert store.current_journal is None


def test_the_first_journal_write_failing_reports_failed_alone(store: UnwritableStore) -> None:
    """Nothing was started: not even DOWNLOADING goes out, and nothing is built."""
    store.journal_fails_at = {JournalPhase.PREPARING}
    world = world_with(store)

    world.service.handle_request(world.request("v1.1"))

    assert world.telemetry.states == ["FAILED"]
    assert world.runtime.calls == []
    assert world.repo.calls == []


def test_a_gateway_failure_before_the_swap_is_retried_on_the_next_assignment(
    store: UnwritableStore,
) -> None:
    store.journal_fails_at = {JournalPhase.PREPARING}
    world = world_with(store)
    world.service.handle_request(world.request("v1.1"))
    store.journal_fails_at = set()  # the operator freed the disk

    result = world.service.handle_request(world.request("v1.1"))

    assert result.outcome is Outcome.UPDATED
    assert world.runtime.running_version == "v1.1"


# ------------------------------------------------- (b) recording the success fails


@pytest.mark.parametrize("write", ["last launched", "known good"])
def test_a_success_that_cannot_be_recorded_rolls_back_and_fails_once(
    store: UnwritableStore, write: str
) -> None:
    if write == "last launched":
        store.launched_fails_for = {"v1.1"}
    else:
        store.good_fails_for = {"v1.1"}
    world = world_with(store)

    result = world.service.handle_request(world.request("v1.1"))

    assert store.phases[-2:] == [JournalPhase.COMMITTING, JournalPhase.ROLLING_BACK]
    assert result.outcome is Outcome.ROLLED_BACK
    assert world.runtime.running_version == "v1.0"
    assert world.telemetry.states == [*BEFORE_SWAP, "FAILED"]
    last = world.telemetry.reports[-1]
    assert last.error is not None
    assert CANNOT_WRITE in last.error
    assert last.error.endswith("rolled back to v1.0")
    assert last.current_version == "v1.0"
    assert "v1.1" not in store.failed_targets
    assert store.failed_version is None
    assert store.launched == "v1.0"
    assert store.good == "v1.0"
    assert store.current_journal is None


def test_the_committing_journal_write_failing_rolls_back(store: UnwritableStore) -> None:
    store.journal_fails_at = {JournalPhase.COMMITTING}
    world = world_with(store)

    result = world.service.handle_request(world.request("v1.1"))

    assert result.outcome is Outcome.ROLLED_BACK
    assert world.runtime.running_version == "v1.0"
    assert world.telemetry.states == [*BEFORE_SWAP, "FAILED"]
    assert "v1.1" not in store.failed_targets


def test_a_disk_that_stays_unwritable_from_committing_rolls_back_to_a_running_previous(
    store: UnwritableStore,
) -> None:
    store.broken_after = JournalPhase.COMMITTING  # e.g. the disk filled in the health check
    world = world_with(store)

    result = world.service.handle_request(world.request("v1.1"))

    assert world.runtime.running_version == "v1.0"  # holds today
    assert world.telemetry.states == [*BEFORE_SWAP, "FAILED"]  # holds today
    assert "v1.1" not in store.failed_targets  # holds today
    last = world.telemetry.reports[-1]
    assert last.current_version == "v1.0"
    assert last.error is not None
    assert last.error.endswith("rolled back to v1.0")
    assert result.outcome is Outcome.ROLLED_BACK


def test_an_update_rolled_back_on_an_unwritable_disk_gets_one_terminal_state_across_a_restart(
    store: UnwritableStore,
) -> None:
    store.broken_after = JournalPhase.COMMITTING
    world = world_with(store)
    world.service.handle_request(world.request("v1.1"))
    assert world.runtime.running_version == "v1.0"  # holds today
    store.broken, store.broken_after = False, None  # the disk is healed; the gateway restarts

    world.new_service().recover()

    # Never UPDATED after the FAILED that was told, and the rollback is not undone. The
    # answer could not be stored on that disk, nor the outbox persist it, so the FAILED is
    # told again once (at least once, never contradicting: it may never have left).
    terminal = [report.state.value for report in world.telemetry.terminal]
    assert "UPDATED" not in terminal and terminal[0] == "FAILED", terminal
    assert set(terminal) == {"FAILED"} and len(terminal) <= 2, terminal
    assert world.runtime.running_version == "v1.0"
    assert store.journal() is None


# ------------------------------------------------------ (c) a launch at start-up


def test_a_launch_whose_last_launched_write_fails_keeps_the_controller_and_reports_it(
    store: UnwritableStore,
) -> None:
    """The watchdog's and start-up's launch (fixed in 1173e92; before it, the failed write
    turned into FAILED and current_sw_* was never sent)."""
    store.launched_fails_for = {"v1.0"}
    world = world_with(store)
    world.runtime.kill()

    result = world.service.launch("v1.0")  # must not raise

    assert world.runtime.running_version == "v1.0"
    assert world.runtime.calls == [f"run {tag('v1.0')}"]  # started once, never stopped
    assert result.outcome is Outcome.UPDATED
    assert world.telemetry.values[-1] == {
        "current_sw_title": "teg-controller",
        "current_sw_version": "v1.0",
    }
    assert world.telemetry.reports == []  # nothing was assigned: no sw_state


def test_a_launch_on_a_disk_that_cannot_write_at_all_keeps_the_controller(
    store: UnwritableStore,
) -> None:
    store.broken = True
    world = world_with(store)
    world.runtime.kill()

    result = world.service.launch("v1.0")

    assert result.outcome is Outcome.UPDATED
    assert world.runtime.running_version == "v1.0"
    assert world.telemetry.values[-1].get("current_sw_version") == "v1.0"
