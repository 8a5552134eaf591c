"""FileVersionStore on real files (tmp_path), no Docker needed: round trips in the seed's
formats, refused input and write failures.

The known-good history is in test_file_version_store_known_good.py, unusable files in
test_file_version_store_fallbacks.py, leftovers, threads and SIGKILL in
test_file_version_store_crashes.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from file_version_store_support import COMMIT, sample_journal, temp_files

from teg_ota.adapters.file_version_store import (
    FAILED_FILE,
    JOURNAL_FILE,
    KNOWN_GOOD_FILE,
    KNOWN_GOOD_HISTORY_FILE,
    LAST_LAUNCHED_FILE,
    FileVersionStore,
    InvalidStoredVersion,
)
from teg_ota.domain.model.journal import FailedVersion, JournalPhase, UpdateJournal
from teg_ota.ports.version_store import VersionStore, VersionStoreError

# -- round trips ---------------------------------------------------------------------------


def test_is_a_version_store(tmp_path: Path) -> None:
    store: VersionStore = FileVersionStore(tmp_path)
    assert store.last_launched() is None


def test_last_launched_round_trip_in_the_seed_format(tmp_path: Path) -> None:
    store = FileVersionStore(tmp_path, default_version="v0.9.0")
    store.set_last_launched("v1.2.3")
    assert store.last_launched() == "v1.2.3"
    assert (tmp_path / LAST_LAUNCHED_FILE).read_text() == "v1.2.3"
    assert FileVersionStore(tmp_path, default_version="v0.9.0").last_launched() == "v1.2.3"


def test_reads_a_seed_file_with_a_trailing_newline(tmp_path: Path, warnings_log: list[str]) -> None:
    (tmp_path / LAST_LAUNCHED_FILE).write_text(f"{COMMIT}\n")
    assert FileVersionStore(tmp_path, default_version="v0.9.0").last_launched() == COMMIT
    assert warnings_log == []


def test_commit_hashes_are_stored_in_lower_case(tmp_path: Path) -> None:
    store = FileVersionStore(tmp_path)
    store.set_last_launched(COMMIT.upper())
    assert store.last_launched() == COMMIT
    assert (tmp_path / LAST_LAUNCHED_FILE).read_text() == COMMIT


def test_last_launched_is_cached_and_the_cache_follows_writes(tmp_path: Path) -> None:
    (tmp_path / LAST_LAUNCHED_FILE).write_text("v1.0.0")
    store = FileVersionStore(tmp_path)
    assert store.last_launched() == "v1.0.0"
    (tmp_path / LAST_LAUNCHED_FILE).write_text("v9.9.9")  # behind the store's back
    assert store.last_launched() == "v1.0.0"
    store.set_last_launched("v2.0.0")
    assert store.last_launched() == "v2.0.0"


def test_failed_version_set_read_and_clear(tmp_path: Path) -> None:
    store = FileVersionStore(tmp_path)
    assert store.failed() is None
    store.set_failed(FailedVersion("v2.0.0", "health check failed: exited with 1 — ü"))
    assert store.failed() == FailedVersion("v2.0.0", "health check failed: exited with 1 — ü")
    assert json.loads((tmp_path / FAILED_FILE).read_text(encoding="utf-8")) == {
        "version": "v2.0.0",
        "error": "health check failed: exited with 1 — ü",
    }
    assert FileVersionStore(tmp_path).failed() == store.failed()
    store.set_failed(None)
    assert store.failed() is None
    assert not (tmp_path / FAILED_FILE).exists()
    store.set_failed(None)  # clearing twice is fine


def test_journal_round_trip_and_clear(tmp_path: Path, warnings_log: list[str]) -> None:
    store = FileVersionStore(tmp_path)
    assert store.journal() is None
    journal = sample_journal()
    store.write_journal(journal)
    assert store.journal() == journal
    assert FileVersionStore(tmp_path).journal() == journal
    assert json.loads((tmp_path / JOURNAL_FILE).read_text()) == journal.to_dict()
    minimal = UpdateJournal("v3", None, JournalPhase.PREPARING, 1.0)
    store.write_journal(minimal)
    assert store.journal() == minimal
    store.clear_journal()
    assert store.journal() is None
    assert not (tmp_path / JOURNAL_FILE).exists()
    store.clear_journal()
    assert warnings_log == []


def test_creates_the_data_directory_and_parents_on_first_write(tmp_path: Path) -> None:
    data = tmp_path / "a" / "b" / "data"
    store = FileVersionStore(data)
    assert store.last_launched() is None
    assert not data.exists()  # reading creates nothing
    store.set_known_good_history(["v1.0.0"])
    assert (data / KNOWN_GOOD_FILE).read_text() == "v1.0.0"


def test_files_are_written_with_mode_644_whatever_the_umask(tmp_path: Path) -> None:
    old_umask = os.umask(0o077)
    try:
        FileVersionStore(str(tmp_path)).set_last_launched("v1.0.0")
    finally:
        os.umask(old_umask)
    assert (tmp_path / LAST_LAUNCHED_FILE).stat().st_mode & 0o777 == 0o644


# -- invalid input and write failures ------------------------------------------------------


def test_invalid_versions_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    store = FileVersionStore(tmp_path)
    store.set_last_launched("v1.0.0")
    store.set_known_good_history(["v1.0.0"])
    # The port's error type (VersionStoreError), and a ValueError too.
    assert issubclass(InvalidStoredVersion, VersionStoreError)
    assert issubclass(InvalidStoredVersion, ValueError)
    for bad in ("", "../x", "-rf", "HEAD", "a b", "v1\n"):
        with pytest.raises(VersionStoreError, match="refusing to store the last launched"):
            store.set_last_launched(bad)
        with pytest.raises(VersionStoreError, match="refusing to store the known-good"):
            store.set_known_good_history(["v2.0.0", bad])
        with pytest.raises(VersionStoreError, match="refusing to store the failed"):
            store.set_failed(FailedVersion(bad, "boom"))
        with pytest.raises(VersionStoreError, match="refusing to store a journal"):
            store.write_journal(UpdateJournal(bad, None, JournalPhase.PREPARING, 1.0))
        with pytest.raises(InvalidStoredVersion, match="refusing to store a journal"):
            store.write_journal(UpdateJournal("v2", bad, JournalPhase.PREPARING, 1.0))
        with pytest.raises(ValueError):
            store.set_last_launched(bad)
    assert store.last_launched() == "v1.0.0"
    assert FileVersionStore(tmp_path).last_launched() == "v1.0.0"
    assert store.known_good_history() == ("v1.0.0",)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [LAST_LAUNCHED_FILE, KNOWN_GOOD_FILE, KNOWN_GOOD_HISTORY_FILE]
    )


def test_write_below_a_regular_file_raises_version_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, so no directory can be created below it (even by root)")
    store = FileVersionStore(blocker / "data", default_version="v0.9.0")
    with pytest.raises(VersionStoreError, match=LAST_LAUNCHED_FILE) as caught:
        store.set_last_launched("v1.0.0")
    assert "blocker" in str(caught.value)
    assert isinstance(caught.value.__cause__, OSError)
    assert store.last_launched() == "v0.9.0"  # the cache did not take the failed value
    with pytest.raises(VersionStoreError):
        store.set_known_good_history(["v1"])
    with pytest.raises(VersionStoreError):
        store.set_failed(FailedVersion("v1", "x"))
    with pytest.raises(VersionStoreError):
        store.write_journal(sample_journal())


def test_write_over_a_directory_raises_and_leaves_no_temp_file(tmp_path: Path) -> None:
    (tmp_path / JOURNAL_FILE).mkdir()
    (tmp_path / JOURNAL_FILE / "child").write_text("x")
    store = FileVersionStore(tmp_path)
    with pytest.raises(VersionStoreError, match=r"Is a directory|Directory not empty"):
        store.write_journal(sample_journal())
    assert temp_files(tmp_path / JOURNAL_FILE) == []
    with pytest.raises(VersionStoreError, match=JOURNAL_FILE):
        store.clear_journal()
