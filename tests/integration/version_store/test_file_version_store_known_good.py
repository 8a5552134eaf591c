"""FileVersionStore's known-good history on real files: it round-trips through
``known_good_history.json`` and the two compatibility text files, keeps the on-disk format
and write order of older releases, and reads (migrates) a data directory they left.

How the history changes (the walk-back rule of ``teg-ota rollback``) is the core's,
tested in tests/unit/test_known_good.py; here the store is handed whole histories, except
where a read catches up by that rule.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from file_version_store_support import COMMIT, history_file, temp_files, text_files

import teg_ota.adapters.store_files
from teg_ota.adapters.file_version_store import (
    KNOWN_GOOD_FILE,
    KNOWN_GOOD_HISTORY_FILE,
    MAX_KNOWN_GOOD_HISTORY,
    PREVIOUS_KNOWN_GOOD_FILE,
    FileVersionStore,
    InvalidStoredVersion,
)
from teg_ota.domain.core import known_good
from teg_ota.ports.version_store import VersionStoreError


def test_known_good_history_round_trip(tmp_path: Path, warnings_log: list[str]) -> None:
    store = FileVersionStore(tmp_path, default_version="v0.9.0")
    assert store.known_good_history() == ()  # no default: nothing has passed a health gate
    store.set_known_good_history(["release/2024.1"])
    assert store.known_good_history() == ("release/2024.1",)
    assert (tmp_path / KNOWN_GOOD_FILE).read_text() == "release/2024.1"
    assert FileVersionStore(tmp_path).known_good_history() == ("release/2024.1",)
    assert warnings_log == []


def test_the_text_files_hold_the_first_two_entries_in_the_seed_format(
    tmp_path: Path, warnings_log: list[str]
) -> None:
    store = FileVersionStore(tmp_path)
    store.set_known_good_history(["v1.0.0"])
    assert text_files(tmp_path) == ("v1.0.0", None)  # nothing before it: no previous file
    assert not (tmp_path / PREVIOUS_KNOWN_GOOD_FILE).exists()

    store.set_known_good_history(["v2.0.0", "v1.0.0"])
    assert text_files(tmp_path) == ("v2.0.0", "v1.0.0")
    assert history_file(tmp_path) == ["v2.0.0", "v1.0.0"]

    store.set_known_good_history(["v1.2", "v1.1", "v1.0"])
    assert history_file(tmp_path) == ["v1.2", "v1.1", "v1.0"]
    assert text_files(tmp_path) == ("v1.2", "v1.1")
    store.set_known_good_history(["v1.0"])  # back to one entry: the previous file goes
    assert history_file(tmp_path) == ["v1.0"]
    assert text_files(tmp_path) == ("v1.0", None)
    assert FileVersionStore(tmp_path).known_good_history() == ("v1.0",)

    store.set_known_good_history([])  # nothing known good any more
    assert history_file(tmp_path) == []
    assert text_files(tmp_path) == (None, None)
    assert FileVersionStore(tmp_path).known_good_history() == ()
    assert warnings_log == []


def test_versions_are_normalised_deduplicated_and_bounded(tmp_path: Path) -> None:
    store = FileVersionStore(tmp_path)
    store.set_known_good_history([COMMIT.upper(), "v2.0.0", COMMIT, "v1.0.0", "v2.0.0"])
    assert store.known_good_history() == (COMMIT, "v2.0.0", "v1.0.0")
    assert history_file(tmp_path) == [COMMIT, "v2.0.0", "v1.0.0"]
    assert text_files(tmp_path) == (COMMIT, "v2.0.0")

    versions = [f"v10.{i}" for i in reversed(range(20))]
    store.set_known_good_history(versions)
    assert MAX_KNOWN_GOOD_HISTORY == known_good.MAX_HISTORY == 10
    assert history_file(tmp_path) == versions[:MAX_KNOWN_GOOD_HISTORY]
    assert FileVersionStore(tmp_path).known_good_history() == tuple(versions[:10])
    assert text_files(tmp_path) == ("v10.19", "v10.18")
    assert temp_files(tmp_path / KNOWN_GOOD_HISTORY_FILE) == []

    # A longer history file (written by hand) reads cut to the bound, duplicates dropped.
    (tmp_path / KNOWN_GOOD_HISTORY_FILE).write_text(
        '{"versions": ["v10.19", "v10.19", ' + ", ".join(f'"v{i}"' for i in range(15)) + "]}"
    )
    read = FileVersionStore(tmp_path).known_good_history()
    assert read == ("v10.19", *(f"v{i}" for i in range(9)))


def test_a_refused_history_changes_no_file(tmp_path: Path) -> None:
    store = FileVersionStore(tmp_path)
    store.set_known_good_history(["v3.0.0", COMMIT])
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    for bad in (["v4.0.0", "../x"], ["--upload-pack=x"], ["v4.0.0", ""]):
        with pytest.raises(InvalidStoredVersion, match="refusing to store the known-good"):
            store.set_known_good_history(bad)
    with pytest.raises(InvalidStoredVersion, match="not a string"):
        store.set_known_good_history("v4.0.0")  # a str is a Sequence[str]: refused
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert store.known_good_history() == ("v3.0.0", COMMIT)


def test_an_unusable_known_good_file_is_not_carried_over(
    tmp_path: Path, warnings_log: list[str]
) -> None:
    store = FileVersionStore(tmp_path)
    store.set_known_good_history([COMMIT, "v2.0.0"])
    # The history still knows which version the known-good file held.
    (tmp_path / KNOWN_GOOD_FILE).write_text("--upload-pack=x")
    assert store.known_good_history() == (COMMIT, "v2.0.0")
    assert len(warnings_log) == 1 and KNOWN_GOOD_FILE in warnings_log[0]
    store.set_known_good_history(["v3.0.0", COMMIT, "v2.0.0"])
    assert text_files(tmp_path) == ("v3.0.0", COMMIT)
    assert history_file(tmp_path) == ["v3.0.0", COMMIT, "v2.0.0"]


def test_history_is_seeded_from_the_text_files_of_an_older_release(
    tmp_path: Path, warnings_log: list[str]
) -> None:
    # What an older teg-ota left: the two text files, no history.
    (tmp_path / KNOWN_GOOD_FILE).write_text("v1.1")
    (tmp_path / PREVIOUS_KNOWN_GOOD_FILE).write_text("v1.0\n")
    store = FileVersionStore(tmp_path)
    assert store.known_good_history() == ("v1.1", "v1.0")
    assert not (tmp_path / KNOWN_GOOD_HISTORY_FILE).exists()  # reading writes nothing

    store.set_known_good_history(["v1.2", "v1.1", "v1.0"])
    assert history_file(tmp_path) == ["v1.2", "v1.1", "v1.0"]
    assert text_files(tmp_path) == ("v1.2", "v1.1")
    assert warnings_log == []

    # Only a known-good file: seeded with one entry.
    only = tmp_path / "only"
    only.mkdir()
    (only / KNOWN_GOOD_FILE).write_text("v2.0")
    store = FileVersionStore(only)
    assert store.known_good_history() == ("v2.0",)
    store.set_known_good_history(store.known_good_history())
    assert history_file(only) == ["v2.0"]
    assert text_files(only) == ("v2.0", None)

    # The same version in both files (an older release's quirk) is one entry.
    same = tmp_path / "same"
    same.mkdir()
    (same / KNOWN_GOOD_FILE).write_text("v3.0")
    (same / PREVIOUS_KNOWN_GOOD_FILE).write_text("v3.0")
    assert FileVersionStore(same).known_good_history() == ("v3.0",)


def test_files_are_written_in_the_crash_safe_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written: list[str] = []
    real_write = teg_ota.adapters.store_files.write_atomic

    def recording_write(path: Path, data: bytes) -> None:
        written.append(path.name)
        real_write(path, data)

    monkeypatch.setattr(teg_ota.adapters.store_files, "write_atomic", recording_write)
    (tmp_path / KNOWN_GOOD_FILE).write_text("v1.1")
    (tmp_path / PREVIOUS_KNOWN_GOOD_FILE).write_text("v1.0")
    store = FileVersionStore(tmp_path)

    # Migrating: the seeded history is made durable before any text file changes.
    store.set_known_good_history(["v1.2", "v1.1", "v1.0"])
    history, kg, prev = KNOWN_GOOD_HISTORY_FILE, KNOWN_GOOD_FILE, PREVIOUS_KNOWN_GOOD_FILE
    assert written == [history, kg, prev, history]
    written.clear()
    store.set_known_good_history(["v1.1", "v1.0"])
    assert written == [kg, prev, history]


def test_a_write_cut_short_during_the_migration_loses_nothing(tmp_path: Path) -> None:
    """The previous file cannot be written (a directory stands in for a crash there): the
    known-good file is already new, the history still the seeded one, and the next read
    catches up by the core's rule."""
    (tmp_path / KNOWN_GOOD_FILE).write_text("v1.1")
    (tmp_path / PREVIOUS_KNOWN_GOOD_FILE).mkdir()
    (tmp_path / PREVIOUS_KNOWN_GOOD_FILE / "child").write_text("x")
    store = FileVersionStore(tmp_path)
    assert store.known_good_history() == ("v1.1",)
    with pytest.raises(VersionStoreError, match=PREVIOUS_KNOWN_GOOD_FILE):
        store.set_known_good_history(["v1.2", "v1.1"])
    assert history_file(tmp_path) == ["v1.1"]  # the seeded history, written first
    assert (tmp_path / KNOWN_GOOD_FILE).read_text() == "v1.2"
    assert store.known_good_history() == ("v1.2", "v1.1")


def test_an_unusable_history_falls_back_to_the_text_files(
    tmp_path: Path, warnings_log: list[str]
) -> None:
    store = FileVersionStore(tmp_path)
    store.set_known_good_history(["v1.2", "v1.1", "v1.0"])
    for bad in ('{"versions": ["v1.2", "../etc"]}', '{"versions": "v1.2"}', "[1, 2", "[]"):
        (tmp_path / KNOWN_GOOD_HISTORY_FILE).write_text(bad)
        warnings_log.clear()
        assert store.known_good_history() == ("v1.2", "v1.1")
        assert warnings_log and KNOWN_GOOD_HISTORY_FILE in warnings_log[0]
    store.set_known_good_history(["v1.1"])  # on the history seeded from the text files
    assert history_file(tmp_path) == ["v1.1"]
    assert text_files(tmp_path) == ("v1.1", None)


def test_history_catches_up_with_a_known_good_file_written_after_it(tmp_path: Path) -> None:
    """A crash between the writes of set_known_good_history (the known-good text file is
    written first), or an older release that wrote only the text files."""
    store = FileVersionStore(tmp_path)
    store.set_known_good_history(["v1.2", "v1.1", "v1.0"])

    (tmp_path / KNOWN_GOOD_FILE).write_text("v1.1")  # a rollback, the history not yet written
    assert store.known_good_history() == ("v1.1", "v1.0")
    (tmp_path / KNOWN_GOOD_FILE).write_text("v1.3")  # an update, the history not yet written
    assert store.known_good_history() == ("v1.3", "v1.2", "v1.1", "v1.0")
    assert history_file(tmp_path) == ["v1.2", "v1.1", "v1.0"]  # reading writes nothing
    store.set_known_good_history(["v1.2", "v1.1", "v1.0"])  # the next write: files agree
    assert history_file(tmp_path) == ["v1.2", "v1.1", "v1.0"]
    assert text_files(tmp_path) == ("v1.2", "v1.1")

    # A missing known-good text file leaves the history as it is.
    (tmp_path / KNOWN_GOOD_FILE).unlink()
    assert store.known_good_history() == ("v1.2", "v1.1", "v1.0")
    # An empty history file and a known-good file: the known-good file wins.
    store.set_known_good_history([])
    (tmp_path / KNOWN_GOOD_FILE).write_text("v2.0")
    assert store.known_good_history() == ("v2.0",)


def test_corrupt_previous_known_good_reads_none_with_a_warning(
    tmp_path: Path, warnings_log: list[str]
) -> None:
    (tmp_path / PREVIOUS_KNOWN_GOOD_FILE).write_bytes(b"HEAD\n")
    assert FileVersionStore(tmp_path).known_good_history() == ()
    assert len(warnings_log) == 1
    assert PREVIOUS_KNOWN_GOOD_FILE in warnings_log[0]
    (tmp_path / KNOWN_GOOD_FILE).write_text("v1.0")
    assert FileVersionStore(tmp_path).known_good_history() == ("v1.0",)


def test_corrupt_known_good_reads_none_with_a_warning(
    tmp_path: Path, warnings_log: list[str]
) -> None:
    (tmp_path / KNOWN_GOOD_FILE).write_bytes(b"\x00\x00\x00")
    assert FileVersionStore(tmp_path, default_version="v0.9.0").known_good_history() == ()
    assert len(warnings_log) == 1
    assert KNOWN_GOOD_FILE in warnings_log[0]
