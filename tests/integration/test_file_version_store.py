"""FileVersionStore and write_atomic on real files (tmp_path); no Docker needed.

The crash tests SIGKILL a child process mid-write. That proves a crashed process never
leaves a torn file; it cannot prove durability across a power cut (the page cache survives
a SIGKILL), which rests on the fsyncs in write_atomic.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from loguru import logger

import teg_ota
from teg_ota.adapters.atomic_file import (
    read_text_or_none,
    remove_stale_temp_files,
    temp_prefix,
    write_atomic,
)
from teg_ota.adapters.file_version_store import (
    FAILED_FILE,
    JOURNAL_FILE,
    KNOWN_GOOD_FILE,
    KNOWN_GOOD_HISTORY_FILE,
    LAST_LAUNCHED_FILE,
    MAX_KNOWN_GOOD_HISTORY,
    PREVIOUS_KNOWN_GOOD_FILE,
    FileVersionStore,
    InvalidStoredVersion,
)
from teg_ota.domain.model.journal import FailedVersion, JournalPhase, UpdateJournal
from teg_ota.domain.model.ota_state import OtaState
from teg_ota.ports.version_store import VersionStore, VersionStoreError

COMMIT = "0123456789abcdef0123456789abcdef01234567"
SRC_DIR = Path(teg_ota.__file__).resolve().parents[1]


@pytest.fixture
def warnings_log() -> Iterator[list[str]]:
    """Messages of WARNING and above that teg_ota logs through loguru during the test."""
    logger.enable("teg_ota")
    messages: list[str] = []
    sink_id = logger.add(
        lambda message: messages.append(message.record["message"]), level="WARNING"
    )
    yield messages
    logger.remove(sink_id)


def history_file(data: Path) -> list[str]:
    """The versions in ``known_good_history.json``, newest first."""
    content = json.loads((data / KNOWN_GOOD_HISTORY_FILE).read_text(encoding="utf-8"))
    assert set(content) == {"versions"}
    versions = content["versions"]
    assert isinstance(versions, list)
    return versions


def text_files(data: Path) -> tuple[str | None, str | None]:
    """(known-good, previous known-good) as the two compatibility text files hold them."""
    return (
        read_text_or_none(data / KNOWN_GOOD_FILE),
        read_text_or_none(data / PREVIOUS_KNOWN_GOOD_FILE),
    )


def temp_files(path: Path) -> list[Path]:
    return sorted(p for p in path.parent.iterdir() if p.name.startswith(temp_prefix(path)))


def sample_journal(**changes: object) -> UpdateJournal:
    journal = UpdateJournal(
        target="v2.0.0",
        previous="v1.0.0",
        phase=JournalPhase.HEALTH_CHECK,
        started_at=1_700_000_000.5,
        reported=OtaState.UPDATING,
        commit=COMMIT,
        new_started_at_ms=1_700_000_001_000,
        error=None,
    )
    return journal.at(journal.phase, **changes) if changes else journal


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


def test_known_good_round_trip(tmp_path: Path, warnings_log: list[str]) -> None:
    store = FileVersionStore(tmp_path, default_version="v0.9.0")
    assert store.known_good() is None  # no default: nothing has passed a health gate yet
    store.set_known_good("release/2024.1")
    assert store.known_good() == "release/2024.1"
    assert (tmp_path / KNOWN_GOOD_FILE).read_text() == "release/2024.1"
    assert FileVersionStore(tmp_path).known_good() == "release/2024.1"
    assert warnings_log == []


def test_set_known_good_keeps_the_one_it_replaces_as_previous(
    tmp_path: Path, warnings_log: list[str]
) -> None:
    store = FileVersionStore(tmp_path)
    assert store.previous_known_good() is None
    store.set_known_good("v1.0.0")
    assert store.previous_known_good() is None  # nothing was replaced
    assert not (tmp_path / PREVIOUS_KNOWN_GOOD_FILE).exists()

    store.set_known_good("v2.0.0")
    assert (store.known_good(), store.previous_known_good()) == ("v2.0.0", "v1.0.0")
    assert (tmp_path / PREVIOUS_KNOWN_GOOD_FILE).read_text() == "v1.0.0"  # the seed format
    store.set_known_good("v2.0.0")  # the same again (recovery re-commits): nothing moves
    assert (store.known_good(), store.previous_known_good()) == ("v2.0.0", "v1.0.0")

    store.set_known_good(COMMIT.upper())
    assert (store.known_good(), store.previous_known_good()) == (COMMIT, "v2.0.0")
    store.set_known_good(COMMIT)  # the same commit, normalised: not a replacement
    assert store.previous_known_good() == "v2.0.0"
    fresh = FileVersionStore(tmp_path)
    assert (fresh.known_good(), fresh.previous_known_good()) == (COMMIT, "v2.0.0")

    # An unusable known-good file is not carried over as the previous one: the history
    # still knows which version it held.
    (tmp_path / KNOWN_GOOD_FILE).write_text("--upload-pack=x")
    store.set_known_good("v3.0.0")
    assert (store.known_good(), store.previous_known_good()) == ("v3.0.0", COMMIT)
    assert len(warnings_log) == 1 and KNOWN_GOOD_FILE in warnings_log[0]

    # A refused write changes no file.
    with pytest.raises(InvalidStoredVersion):
        store.set_known_good("../x")
    assert (store.known_good(), store.previous_known_good()) == ("v3.0.0", COMMIT)
    assert history_file(tmp_path) == ["v3.0.0", COMMIT, "v2.0.0", "v1.0.0"]


def test_two_rollbacks_in_a_row_go_back_two_versions(tmp_path: Path) -> None:
    store = FileVersionStore(tmp_path)
    for version in ("v1.0", "v1.1", "v1.2"):  # three successful updates
        store.set_known_good(version)
    assert history_file(tmp_path) == ["v1.2", "v1.1", "v1.0"]
    assert (store.known_good(), store.previous_known_good()) == ("v1.2", "v1.1")
    assert text_files(tmp_path) == ("v1.2", "v1.1")

    # teg-ota rollback: v1.1 (the previous known-good) is started and committed.
    store.set_known_good(store.previous_known_good() or "")
    assert (store.known_good(), store.previous_known_good()) == ("v1.1", "v1.0")
    assert history_file(tmp_path) == ["v1.1", "v1.0"]
    assert text_files(tmp_path) == ("v1.1", "v1.0")

    # A second rollback goes further back, not forward to v1.2 again; and it persists.
    store.set_known_good(FileVersionStore(tmp_path).previous_known_good() or "")
    assert (store.known_good(), store.previous_known_good()) == ("v1.0", None)
    assert history_file(tmp_path) == ["v1.0"]
    assert text_files(tmp_path) == ("v1.0", None)
    fresh = FileVersionStore(tmp_path)
    assert (fresh.known_good(), fresh.previous_known_good()) == ("v1.0", None)


def test_known_good_history_rule_and_bound(tmp_path: Path) -> None:
    store = FileVersionStore(tmp_path)
    for version in ("v1", "v2", "v3", "v4"):
        store.set_known_good(version)
    store.set_known_good("v4")  # the newest again: nothing moves
    assert history_file(tmp_path) == ["v4", "v3", "v2", "v1"]
    store.set_known_good("v2")  # an older one, not the second: pushed, its old entry removed
    assert history_file(tmp_path) == ["v2", "v4", "v3", "v1"]
    assert (store.known_good(), store.previous_known_good()) == ("v2", "v4")
    store.set_known_good(COMMIT.upper())  # normalised like every stored version
    store.set_known_good(COMMIT)
    assert history_file(tmp_path) == [COMMIT, "v2", "v4", "v3", "v1"]

    for i in range(20):
        store.set_known_good(f"v10.{i}")
    expected = [f"v10.{i}" for i in reversed(range(20))][:MAX_KNOWN_GOOD_HISTORY]
    assert MAX_KNOWN_GOOD_HISTORY == 10
    assert history_file(tmp_path) == expected
    assert FileVersionStore(tmp_path).previous_known_good() == "v10.18"
    assert text_files(tmp_path) == ("v10.19", "v10.18")
    assert temp_files(tmp_path / KNOWN_GOOD_HISTORY_FILE) == []


def test_history_is_seeded_from_the_text_files_of_an_older_release(
    tmp_path: Path, warnings_log: list[str]
) -> None:
    # What an older teg-ota left: the two text files, no history.
    (tmp_path / KNOWN_GOOD_FILE).write_text("v1.1")
    (tmp_path / PREVIOUS_KNOWN_GOOD_FILE).write_text("v1.0\n")
    store = FileVersionStore(tmp_path)
    assert (store.known_good(), store.previous_known_good()) == ("v1.1", "v1.0")
    assert not (tmp_path / KNOWN_GOOD_HISTORY_FILE).exists()  # reading writes nothing

    store.set_known_good("v1.2")
    assert history_file(tmp_path) == ["v1.2", "v1.1", "v1.0"]
    store.set_known_good("v1.1")  # rollback
    store.set_known_good("v1.0")  # rollback again: the migrated entry is still known
    assert (store.known_good(), store.previous_known_good()) == ("v1.0", None)
    assert warnings_log == []

    # Only a known-good file: seeded with one entry; a rollback target appears once pushed.
    only = tmp_path / "only"
    only.mkdir()
    (only / KNOWN_GOOD_FILE).write_text("v2.0")
    store = FileVersionStore(only)
    assert (store.known_good(), store.previous_known_good()) == ("v2.0", None)
    store.set_known_good("v2.0")
    assert history_file(only) == ["v2.0"]
    assert text_files(only) == ("v2.0", None)


def test_an_unusable_history_falls_back_to_the_text_files(
    tmp_path: Path, warnings_log: list[str]
) -> None:
    store = FileVersionStore(tmp_path)
    for version in ("v1.0", "v1.1", "v1.2"):
        store.set_known_good(version)
    for bad in ('{"versions": ["v1.2", "../etc"]}', '{"versions": "v1.2"}', "[1, 2", "[]"):
        (tmp_path / KNOWN_GOOD_HISTORY_FILE).write_text(bad)
        warnings_log.clear()
        assert (store.known_good(), store.previous_known_good()) == ("v1.2", "v1.1")
        assert warnings_log and KNOWN_GOOD_HISTORY_FILE in warnings_log[0]
    store.set_known_good("v1.1")  # rollback, on the history seeded from the text files
    assert history_file(tmp_path) == ["v1.1"]
    assert text_files(tmp_path) == ("v1.1", None)


def test_history_catches_up_with_a_known_good_file_written_after_it(tmp_path: Path) -> None:
    """A crash between the writes of set_known_good (the known-good text file is written
    first), or an older release that wrote only the text files."""
    store = FileVersionStore(tmp_path)
    for version in ("v1.0", "v1.1", "v1.2"):
        store.set_known_good(version)

    (tmp_path / KNOWN_GOOD_FILE).write_text("v1.1")  # a rollback, the history not yet written
    assert (store.known_good(), store.previous_known_good()) == ("v1.1", "v1.0")
    (tmp_path / KNOWN_GOOD_FILE).write_text("v1.3")  # an update, the history not yet written
    assert (store.known_good(), store.previous_known_good()) == ("v1.3", "v1.2")
    store.set_known_good("v1.2")  # and the next write makes every file agree
    assert history_file(tmp_path) == ["v1.2", "v1.1", "v1.0"]
    assert text_files(tmp_path) == ("v1.2", "v1.1")

    # A missing known-good text file leaves the history as it is.
    (tmp_path / KNOWN_GOOD_FILE).unlink()
    assert (store.known_good(), store.previous_known_good()) == ("v1.2", "v1.1")


def test_corrupt_previous_known_good_reads_none_with_a_warning(
    tmp_path: Path, warnings_log: list[str]
) -> None:
    (tmp_path / PREVIOUS_KNOWN_GOOD_FILE).write_bytes(b"HEAD\n")
    assert FileVersionStore(tmp_path).previous_known_good() is None
    assert len(warnings_log) == 1
    assert PREVIOUS_KNOWN_GOOD_FILE in warnings_log[0]


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
    store.set_known_good("v1.0.0")
    assert (data / KNOWN_GOOD_FILE).read_text() == "v1.0.0"


def test_files_are_written_with_mode_644_whatever_the_umask(tmp_path: Path) -> None:
    old_umask = os.umask(0o077)
    try:
        FileVersionStore(str(tmp_path)).set_last_launched("v1.0.0")
    finally:
        os.umask(old_umask)
    assert (tmp_path / LAST_LAUNCHED_FILE).stat().st_mode & 0o777 == 0o644


# -- fallbacks -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(None, id="missing"),
        pytest.param(b"", id="empty"),
        pytest.param(b" \n\t\n", id="whitespace"),
        pytest.param(b"\xff\xfe\x00\x01garbage\x80", id="corrupt-bytes"),
        pytest.param("v1.0.0".encode("utf-16"), id="not-utf8"),
        pytest.param(b"v" * 10_000 + b"\n", id="huge-line"),
        pytest.param(os.urandom(64 * 1024), id="huge-random"),
        pytest.param(b"../../etc/passwd", id="invalid-version"),
        pytest.param(b"--upload-pack=touch /tmp/x", id="option-injection"),
        pytest.param(b"v1.0.0\nv2.0.0", id="two-lines"),
    ],
)
def test_unusable_last_launched_falls_back_to_the_default_with_a_warning(
    tmp_path: Path, warnings_log: list[str], content: bytes | None
) -> None:
    if content is not None:
        (tmp_path / LAST_LAUNCHED_FILE).write_bytes(content)
    store = FileVersionStore(tmp_path, default_version="v0.9.0")
    assert store.last_launched() == "v0.9.0"
    assert len(warnings_log) == 1
    assert LAST_LAUNCHED_FILE in warnings_log[0]
    assert "v0.9.0" in warnings_log[0]
    assert len(warnings_log[0]) < 1000  # untrusted content is not dumped into the log
    assert store.last_launched() == "v0.9.0"
    assert len(warnings_log) == 1  # cached: warned once


def test_unreadable_last_launched_falls_back(tmp_path: Path, warnings_log: list[str]) -> None:
    (tmp_path / LAST_LAUNCHED_FILE).mkdir()  # reading a directory fails, even for root
    assert FileVersionStore(tmp_path, default_version="v0.9.0").last_launched() == "v0.9.0"
    assert len(warnings_log) == 1


def test_data_path_that_is_a_file_falls_back(tmp_path: Path, warnings_log: list[str]) -> None:
    (tmp_path / "data").write_text("not a directory")
    assert FileVersionStore(tmp_path / "data", "v0.9.0").last_launched() == "v0.9.0"
    assert len(warnings_log) == 1


def test_no_file_and_no_default_reads_none(tmp_path: Path, warnings_log: list[str]) -> None:
    assert FileVersionStore(tmp_path).last_launched() is None
    assert len(warnings_log) == 1
    (tmp_path / LAST_LAUNCHED_FILE).write_bytes(b"\xff\xff")
    assert FileVersionStore(tmp_path, default_version=None).last_launched() is None


@pytest.mark.parametrize("default", ["", " ", "-v1", "a..b", "v1.lock", "x" * 129, "v1\n"])
def test_an_invalid_default_is_refused(tmp_path: Path, default: str) -> None:
    with pytest.raises(ValueError, match="TEG_DEFAULT_CONTROLLER_VERSION"):
        FileVersionStore(tmp_path, default_version=default)


def test_corrupt_known_good_reads_none_with_a_warning(
    tmp_path: Path, warnings_log: list[str]
) -> None:
    (tmp_path / KNOWN_GOOD_FILE).write_bytes(b"\x00\x00\x00")
    assert FileVersionStore(tmp_path, default_version="v0.9.0").known_good() is None
    assert len(warnings_log) == 1
    assert KNOWN_GOOD_FILE in warnings_log[0]


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"[]",
        b'{"version": "v1"}',
        b'{"version": 5, "error": "x"}',
        b'{"version": "../x", "error": "x"}',
        b"\xff\xfe",
    ],
)
def test_corrupt_failed_version_reads_none_with_a_warning(
    tmp_path: Path, warnings_log: list[str], content: bytes
) -> None:
    (tmp_path / FAILED_FILE).write_bytes(content)
    assert FileVersionStore(tmp_path).failed() is None
    assert len(warnings_log) == 1


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b'{"target": "v2", "phase": "SWAP', id="truncated"),
        pytest.param(b"\xff\xfe\x00garbage", id="bytes"),
        pytest.param(b"[1, 2]", id="not-an-object"),
        pytest.param(b"[" * 100_000, id="deeply-nested"),
        pytest.param(b'{"target": "v2", "phase": "SWAPPING"}', id="no-start-time"),
        pytest.param(b'{"target": "v2", "phase": "DANCING", "started_at": 1}', id="bad-phase"),
        pytest.param(
            b'{"target": "--force", "phase": "SWAPPING", "started_at": 1}', id="bad-target"
        ),
        pytest.param(b'{"x": "' + b"y" * 300_000 + b'"}', id="huge"),
    ],
)
def test_corrupt_journal_reads_none_and_is_moved_aside(
    tmp_path: Path, warnings_log: list[str], content: bytes
) -> None:
    (tmp_path / JOURNAL_FILE).write_bytes(content)
    store = FileVersionStore(tmp_path)
    assert store.journal() is None
    assert not (tmp_path / JOURNAL_FILE).exists()
    kept = list(tmp_path.glob(f"{JOURNAL_FILE}.corrupt-*"))
    assert len(kept) == 1
    assert kept[0].read_bytes() == content
    stamp = int(kept[0].name.rsplit("-", 1)[1])
    assert abs(stamp - time.time()) < 60
    assert len(warnings_log) == 1
    assert JOURNAL_FILE in warnings_log[0]
    assert kept[0].name in warnings_log[0]
    assert len(warnings_log[0]) < 1500
    assert store.journal() is None  # nothing left to complain about
    assert len(warnings_log) == 1
    store.write_journal(sample_journal())  # the store carries on
    assert store.journal() == sample_journal()


@pytest.mark.parametrize("kind", ["directory", "symlink-loop"])
def test_a_journal_that_cannot_be_read_now_is_not_moved_aside(
    tmp_path: Path, warnings_log: list[str], kind: str
) -> None:
    # Real files that make open() fail with an OSError (EISDIR, ELOOP) stand in for a
    # transient read error such as EIO: not evidence of a corrupt journal.
    path = tmp_path / JOURNAL_FILE
    if kind == "directory":
        path.mkdir()
    else:
        path.symlink_to(path.name)
    store = FileVersionStore(tmp_path)
    assert store.journal() is None
    assert os.path.lexists(path)
    assert path.is_dir() if kind == "directory" else path.is_symlink()
    assert list(tmp_path.glob(f"{JOURNAL_FILE}.corrupt-*")) == []
    assert len(warnings_log) == 1
    assert "Cannot read the journal" in warnings_log[0]


def test_corrupt_journals_in_the_same_second_are_all_kept(tmp_path: Path) -> None:
    store = FileVersionStore(tmp_path)
    for content in (b"first", b"second", b"third"):
        (tmp_path / JOURNAL_FILE).write_bytes(content)
        assert store.journal() is None
    kept = sorted(p.read_bytes() for p in tmp_path.glob(f"{JOURNAL_FILE}.corrupt-*"))
    assert kept == [b"first", b"second", b"third"]


# -- invalid input and write failures ------------------------------------------------------


def test_invalid_versions_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    store = FileVersionStore(tmp_path)
    store.set_last_launched("v1.0.0")
    store.set_known_good("v1.0.0")
    # The port's error type (VersionStoreError), and a ValueError too.
    assert issubclass(InvalidStoredVersion, VersionStoreError)
    assert issubclass(InvalidStoredVersion, ValueError)
    for bad in ("", "../x", "-rf", "HEAD", "a b", "v1\n"):
        with pytest.raises(VersionStoreError, match="refusing to store the last launched"):
            store.set_last_launched(bad)
        with pytest.raises(VersionStoreError, match="refusing to store the known-good"):
            store.set_known_good(bad)
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
    assert store.known_good() == "v1.0.0"
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
        store.set_known_good("v1")
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


def test_write_atomic_failure_keeps_the_old_content_and_removes_the_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "file"
    write_atomic(target, b"old")

    def failing_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("teg_ota.adapters.atomic_file.os.fsync", failing_fsync)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(target, b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert temp_files(target) == []


def test_read_text_or_none(tmp_path: Path) -> None:
    target = tmp_path / "file"
    assert read_text_or_none(target) is None
    write_atomic(target, "grüße\n".encode())
    assert read_text_or_none(target) == "grüße\n"
    assert read_text_or_none(target, max_bytes=8) == "grüße\n"
    with pytest.raises(ValueError, match="larger than 4 bytes"):
        read_text_or_none(target, max_bytes=4)
    target.write_bytes(b"\xff")
    with pytest.raises(UnicodeDecodeError):
        read_text_or_none(target)
    with pytest.raises(OSError):
        read_text_or_none(tmp_path)


# -- leftovers and threads -----------------------------------------------------------------


def test_construction_removes_stale_temp_files_of_its_own_files_only(tmp_path: Path) -> None:
    old = time.time() - 3600
    stale = [
        tmp_path / f"{temp_prefix(tmp_path / name)}abc123"
        for name in (
            LAST_LAUNCHED_FILE,
            KNOWN_GOOD_FILE,
            PREVIOUS_KNOWN_GOOD_FILE,
            KNOWN_GOOD_HISTORY_FILE,
            FAILED_FILE,
            JOURNAL_FILE,
        )
    ]
    fresh = tmp_path / f"{temp_prefix(tmp_path / JOURNAL_FILE)}inflight"  # a write in progress
    foreign = tmp_path / ".outbox.json.tmp-xyz"
    for path in [*stale, fresh, foreign]:
        path.write_text("partial")
    for path in [*stale, foreign]:
        os.utime(path, (old, old))
    future = time.time() + 3600  # a clock that was set back after a reboot
    far_future_leftover = tmp_path / f"{temp_prefix(tmp_path / LAST_LAUNCHED_FILE)}zzz"
    far_future_leftover.write_text("partial")
    os.utime(far_future_leftover, (future, future))

    FileVersionStore(tmp_path)

    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([fresh.name, foreign.name])
    FileVersionStore(tmp_path, stale_temp_after=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == [foreign.name]


def test_concurrent_use_from_threads(tmp_path: Path) -> None:
    store = FileVersionStore(tmp_path, default_version="v0.9.0")
    versions = [f"v1.{i}" for i in range(20)]
    errors: list[BaseException] = []

    def writer(offset: int) -> None:
        try:
            for version in versions[offset:] + versions[:offset]:
                store.set_last_launched(version)
                store.set_known_good(version)
                store.write_journal(sample_journal(target=version))
                store.set_failed(FailedVersion(version, "x"))
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(100):
                assert store.last_launched() in [*versions, "v0.9.0"]
                assert store.known_good() in [*versions, None]
                journal = store.journal()
                assert journal is None or journal.target in versions
                failed = store.failed()
                assert failed is None or failed.version in versions
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i * 5,)) for i in range(4)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    fresh = FileVersionStore(tmp_path)
    assert fresh.last_launched() == store.last_launched()
    assert fresh.journal() == store.journal()
    assert not list(tmp_path.glob(".*.tmp-*"))


# -- crash safety --------------------------------------------------------------------------

SIZE = 1_000_000
CONTENT_A = b"a" * SIZE
CONTENT_B = b"b" * SIZE

ATOMIC_WRITER = f"""
import sys
from pathlib import Path
from teg_ota.adapters.atomic_file import write_atomic
path = Path(sys.argv[1])
contents = (b"b" * {SIZE}, b"a" * {SIZE})
print("ready", flush=True)
i = 0
while True:
    write_atomic(path, contents[i % 2])
    i += 1
"""

STORE_WRITER = """
import sys
from teg_ota.adapters.file_version_store import FileVersionStore
store = FileVersionStore(sys.argv[1], default_version="v0.0.0-default")
print("ready", flush=True)
i = 0
while True:
    store.set_last_launched(("v2.0.0", "v1.0.0")[i % 2])
    i += 1
"""


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC_DIR), env.get("PYTHONPATH")]))
    return env


def start_and_kill(code: str, arg: Path, delay: float) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(arg)], stdout=subprocess.PIPE, env=child_env()
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"ready\n"
        time.sleep(delay)
        assert child.poll() is None, "the writer died on its own"
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=10)
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL


def kill_window(tmp_path: Path) -> float:
    """A kill delay range covering a few writes on this machine's file system."""
    probe = tmp_path / "probe"
    started = time.monotonic()
    for content in (CONTENT_A, CONTENT_B):
        write_atomic(probe, content)
    per_write = (time.monotonic() - started) / 2
    probe.unlink()
    return min(0.2, max(0.02, 4 * per_write))


@pytest.mark.timeout(60)
def test_sigkill_during_write_atomic_never_leaves_a_torn_file(tmp_path: Path) -> None:
    target = tmp_path / "big.bin"
    write_atomic(target, CONTENT_A)
    window = kill_window(tmp_path)
    rng = random.Random()
    seen: set[bytes] = set()
    deadline = time.monotonic() + 12
    iterations = 0
    while iterations < 40 and time.monotonic() < deadline:
        iterations += 1
        start_and_kill(ATOMIC_WRITER, target, rng.uniform(0, window))
        content = target.read_bytes()
        assert content in (CONTENT_A, CONTENT_B), (
            f"torn file after kill {iterations}: {len(content)} bytes, "
            f"{content.count(b'a')} 'a' and {content.count(b'b')} 'b'"
        )
        seen.add(content[:1])
        leftovers = temp_files(target)
        assert len(leftovers) <= 1, leftovers  # at most the one write that was cut short
        assert remove_stale_temp_files(target, older_than=0) == leftovers
    assert iterations >= 10
    assert seen == {b"a", b"b"}, "the kills never landed after a completed write"
    assert read_text_or_none(target) in ("a" * SIZE, "b" * SIZE)


@pytest.mark.timeout(60)
def test_sigkill_during_set_last_launched_keeps_a_whole_version(
    tmp_path: Path, warnings_log: list[str]
) -> None:
    FileVersionStore(tmp_path).set_last_launched("v1.0.0")
    rng = random.Random()
    seen: set[str | None] = set()
    deadline = time.monotonic() + 8
    iterations = 0
    while iterations < 25 and time.monotonic() < deadline:
        iterations += 1
        start_and_kill(STORE_WRITER, tmp_path, rng.uniform(0, 0.02))
        assert len(temp_files(tmp_path / LAST_LAUNCHED_FILE)) <= 1
        store = FileVersionStore(tmp_path, "v0.0.0-default", stale_temp_after=0)
        assert temp_files(tmp_path / LAST_LAUNCHED_FILE) == []  # cleaned at construction
        version = store.last_launched()
        assert version in ("v1.0.0", "v2.0.0")
        seen.add(version)
    assert iterations >= 5
    assert warnings_log == []
    assert seen == {"v1.0.0", "v2.0.0"}
