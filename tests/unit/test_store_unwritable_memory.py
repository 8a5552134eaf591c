"""What the file store could not write is still true for this process (issue 17 review): a
finished journal the disk would not let go of, an answer it would not take."""

from __future__ import annotations

from pathlib import Path

import pytest

from teg_ota.adapters.file_version_store import FileVersionStore
from teg_ota.domain.model.journal import Answer, JournalPhase, UpdateJournal
from teg_ota.domain.model.ota_state import OtaState
from teg_ota.ports.version_store import VersionStoreError


def refuse(store: FileVersionStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(*_: object) -> None:
        raise VersionStoreError("the gateway cannot write /data: Read-only file system")

    monkeypatch.setattr(store._files, "remove", refused)
    monkeypatch.setattr(store._files, "write", refused)


def test_a_journal_that_cannot_be_removed_reads_as_cleared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileVersionStore(tmp_path)
    journal = UpdateJournal("v1.1", "v1.0", JournalPhase.ROLLING_BACK, 0.0)
    store.write_journal(journal)
    refuse(store, monkeypatch)
    with pytest.raises(VersionStoreError):
        store.clear_journal()
    assert store.journal() is None, "finished for this process: not recovered again"
    assert (tmp_path / "update_journal.json").exists()
    assert FileVersionStore(tmp_path).journal() == journal, "a restart still sees it"


def test_a_new_journal_written_afterwards_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileVersionStore(tmp_path)
    store.write_journal(UpdateJournal("v1.1", "v1.0", JournalPhase.ROLLING_BACK, 0.0))
    with monkeypatch.context() as patch:
        refuse(store, patch)
        with pytest.raises(VersionStoreError):
            store.clear_journal()
    newer = UpdateJournal("v1.2", "v1.0", JournalPhase.PREPARING, 1.0)
    store.write_journal(newer)
    assert store.journal() == newer


def test_an_answer_the_disk_refused_is_still_the_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileVersionStore(tmp_path)
    store.set_answered(Answer(OtaState.UPDATED, "v1.0", None))
    refuse(store, monkeypatch)
    failed = Answer(OtaState.FAILED, "v1.1", "teg-controller")
    with pytest.raises(VersionStoreError):
        store.set_answered(failed)
    assert store.answered() == failed
    with pytest.raises(VersionStoreError):
        store.set_answered(None)
    assert store.answered() is None
