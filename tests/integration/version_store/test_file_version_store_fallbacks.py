"""FileVersionStore on unusable files (tmp_path): missing, empty, corrupt, hostile or
unreadable content reads as "unknown" plus a warning, never a crash; a corrupt journal is
moved aside, one that cannot be read now is left alone."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from file_version_store_support import sample_journal

from teg_ota.adapters.file_version_store import (
    FAILED_FILE,
    JOURNAL_FILE,
    LAST_LAUNCHED_FILE,
    FileVersionStore,
)


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
