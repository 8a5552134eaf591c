"""The VersionStore contract, checked once against the in-memory fake the unit tests use and
against the real FileVersionStore (on files in tmp_path): if the fake drifts from the real
store, the unit tests of the services stop proving anything."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from teg_ota.adapters.file_version_store import FileVersionStore
from teg_ota.domain.core import known_good
from teg_ota.domain.model.journal import Answer, FailedVersion, JournalPhase, UpdateJournal
from teg_ota.domain.model.ota_state import OtaState
from teg_ota.ports.version_store import VersionStore

from .fakes import FakeStore

COMMIT = "0123456789abcdef0123456789abcdef01234567"
DEFAULT = "v0.9.0"

StoreFactory = Callable[[str | None], VersionStore]


def _fake(tmp_path: Path) -> StoreFactory:
    return lambda default: FakeStore(default=default)


def _file(tmp_path: Path) -> StoreFactory:
    return lambda default: FileVersionStore(tmp_path / "data", default_version=default)


@pytest.fixture(params=[_fake, _file], ids=["fake", "file"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """A factory of empty stores of one kind (the file kind shares one data directory)."""
    factory: Callable[[Path], StoreFactory] = request.param
    return factory(tmp_path)


@pytest.fixture
def store(make_store: StoreFactory) -> VersionStore:
    return make_store(DEFAULT)


def test_last_launched_falls_back_to_the_default(make_store: StoreFactory) -> None:
    assert make_store(DEFAULT).last_launched() == DEFAULT
    assert make_store(None).last_launched() is None


def test_last_launched_round_trip(store: VersionStore) -> None:
    store.set_last_launched("v1.2.3")
    assert store.last_launched() == "v1.2.3"
    store.set_last_launched(COMMIT)
    assert store.last_launched() == COMMIT


def test_known_good_history_starts_empty(store: VersionStore) -> None:
    """The default version has not passed a health gate: it is not known good."""
    assert store.known_good_history() == ()
    assert known_good.newest(store.known_good_history()) is None


@pytest.mark.parametrize(
    "history",
    [
        pytest.param(("v1.0.0",), id="one"),
        pytest.param(("v2.0.0", "v1.0.0"), id="two"),
        pytest.param((COMMIT, "release/2024.1", "v1.0.0"), id="three"),
        pytest.param(tuple(f"v1.{i}" for i in range(known_good.MAX_HISTORY)), id="full"),
    ],
)
def test_known_good_history_round_trip(store: VersionStore, history: tuple[str, ...]) -> None:
    store.set_known_good_history(history)
    assert store.known_good_history() == history
    store.set_known_good_history(list(history))  # any sequence, a tuple comes back
    assert store.known_good_history() == history
    store.set_known_good_history(())
    assert store.known_good_history() == ()


def test_the_core_rule_runs_on_the_stored_history(store: VersionStore) -> None:
    for version in ("v1.0", "v1.1", "v1.2"):
        store.set_known_good_history(known_good.after_success(store.known_good_history(), version))
    assert store.known_good_history() == ("v1.2", "v1.1", "v1.0")
    target = known_good.rollback_target(store.known_good_history(), running="v1.2")
    assert target == "v1.1"
    store.set_known_good_history(known_good.after_success(store.known_good_history(), target))
    assert store.known_good_history() == ("v1.1", "v1.0")


def test_failed_version_set_read_and_clear(store: VersionStore) -> None:
    assert store.failed() is None
    failed = FailedVersion("v2.0.0", "health check failed: exited with 1")
    store.set_failed(failed)
    assert store.failed() == failed
    store.set_failed(FailedVersion("v3.0.0", "could not start"))
    assert store.failed() == FailedVersion("v3.0.0", "could not start")
    store.set_failed(None)
    assert store.failed() is None
    store.set_failed(None)  # clearing twice is fine
    assert store.failed() is None


def test_a_failure_keeps_the_fingerprint_of_its_settings(store: VersionStore) -> None:
    failed = FailedVersion("v2.0.0", "privileged refused", "0123456789abcdef")
    store.set_failed(failed)
    assert store.failed() == failed


def test_the_last_answer_set_read_and_forgotten(store: VersionStore) -> None:
    assert store.answered() is None
    store.set_answered(Answer(OtaState.UPDATED, "v2.0.0"))
    assert store.answered() == Answer(OtaState.UPDATED, "v2.0.0")
    store.set_answered(Answer(OtaState.FAILED, "v3.0.0"))
    assert store.answered() == Answer(OtaState.FAILED, "v3.0.0")
    store.set_answered(None)
    assert store.answered() is None


def test_journal_write_read_and_clear(store: VersionStore) -> None:
    assert store.journal() is None
    journal = UpdateJournal(
        target="v2.0.0",
        previous="v1.0.0",
        phase=JournalPhase.HEALTH_CHECK,
        started_at=1_700_000_000.5,
        reported=OtaState.UPDATING,
        commit=COMMIT,
        new_started_at_ms=1_700_000_001_000,
    )
    store.write_journal(journal)
    assert store.journal() == journal
    later = journal.at(JournalPhase.COMMITTING)
    store.write_journal(later)
    assert store.journal() == later
    minimal = UpdateJournal("v3", None, JournalPhase.PREPARING, 1.0)
    store.write_journal(minimal)
    assert store.journal() == minimal
    store.clear_journal()
    assert store.journal() is None
    store.clear_journal()  # clearing twice is fine
    assert store.journal() is None


def test_the_parts_are_independent(store: VersionStore) -> None:
    store.set_last_launched("v1.0.0")
    store.set_known_good_history(("v1.0.0",))
    store.set_failed(FailedVersion("v2.0.0", "boom"))
    store.write_journal(UpdateJournal("v3.0.0", "v1.0.0", JournalPhase.PREPARING, 1.0))
    store.clear_journal()
    store.set_failed(None)
    assert store.last_launched() == "v1.0.0"
    assert store.known_good_history() == ("v1.0.0",)
