"""``teg-ota doctor``'s state checks (issue 17, "degraded but alive": the doctor reports each
degraded condition with its fix), on real data directories in tmp_path put in each bad
shape. Every run also proves the doctor only reads: the tree (types, sizes, contents,
mtimes, directory mtimes included) is the same before and after.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from teg_ota.adapters.file_version_store import (
    ANSWER_FILE,
    FAILED_FILE,
    JOURNAL_FILE,
    KNOWN_GOOD_FILE,
    KNOWN_GOOD_HISTORY_FILE,
    LAST_LAUNCHED_FILE,
    PREVIOUS_KNOWN_GOOD_FILE,
    FileVersionStore,
)
from teg_ota.adapters.mqtt.outbox import OUTBOX_DIR_NAME
from teg_ota.adapters.mqtt.outbox_format import encode_entry, entry_file_name
from teg_ota.adapters.mqtt.timestamps import format_mark, mark_path
from teg_ota.adapters.resolved_files import RESOLVED_FILE
from teg_ota.app import doctor_lock
from teg_ota.app.doctor import Check, state_checks
from teg_ota.app.process_lock import LOCK_NAME, ProcessLock
from teg_ota.app.settings import Settings
from teg_ota.domain.model.journal import Answer, FailedVersion, JournalPhase, UpdateJournal
from teg_ota.domain.model.ota_state import OtaState

NOW = 1_750_000_000.0
TOPIC = "v1/devices/me/telemetry"


# -- helpers --------------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Everything under ``root`` (itself included): type, size, mtime and content hash."""
    tree: dict[str, tuple[object, ...]] = {}
    if not root.exists():
        return tree
    for path in [root, *sorted(root.rglob("*"))]:
        info = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        tree[str(path.relative_to(root))] = (info.st_mode, info.st_size, info.st_mtime_ns, digest)
    return tree


def doctor(data: Path | Settings, watch: Path | None = None) -> list[Check]:
    """The state checks of ``data``; asserts they changed nothing under ``watch`` (the data
    directory's parent: a missing data directory must not be created either)."""
    root = watch or (Path(data.data_path) if isinstance(data, Settings) else data).parent
    before = snapshot(root)
    checks = list(state_checks(data, clock=lambda: NOW))
    assert snapshot(root) == before
    return checks


def only(checks: list[Check], name: str) -> Check:
    found = [check for check in checks if check.name == name]
    assert len(found) == 1, checks
    return found[0]


def failure(checks: list[Check], name: str, path: Path) -> Check:
    """The one failed check ``name``, which must name ``path`` and give a fix."""
    failed = [check for check in checks if not check.ok]
    assert [check.name for check in failed] == [name], failed
    check = failed[0]
    assert str(path) in check.detail, check
    assert check.fix.strip(), check
    return check


def all_ok(checks: list[Check]) -> None:
    assert all(check.ok for check in checks), [check for check in checks if not check.ok]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def store(data: Path) -> FileVersionStore:
    return FileVersionStore(data)


@pytest.fixture
def lock(data: Path) -> Iterator[ProcessLock]:
    held = ProcessLock(data)
    held.acquire()
    yield held
    held.release()


def fake_statvfs(*, read_only: bool = False, free: int = 2**30) -> object:
    return SimpleNamespace(
        f_flag=os.ST_RDONLY if read_only else 0, f_bavail=free // 4096, f_frsize=4096
    )


def write_entry(outbox: Path, seq: int, ota: bool = False) -> Path:
    outbox.mkdir(exist_ok=True)
    path = outbox / entry_file_name(seq, ota)
    path.write_bytes(encode_entry(TOPIC, b'{"k": 1}'))
    return path


# -- a healthy directory --------------------------------------------------------------------


def test_an_empty_data_directory_is_all_ok(data: Path) -> None:
    checks = doctor(data)

    all_ok(checks)
    names = [check.name for check in checks]
    assert names == [
        "data directory",
        "version file",
        "state files",
        "update journal",
        "outbox",
        "timestamp mark",
        "lock",
    ]
    assert "writable directory" in only(checks, "data directory").detail
    assert "the runner is not running" in only(checks, "lock").detail


def test_a_fully_populated_directory_is_all_ok_and_summarised(
    data: Path, store: FileVersionStore
) -> None:
    store.set_last_launched("v1.2")
    store.set_known_good_history(["v1.2", "v1.1"])
    store.set_failed(FailedVersion("v1.3", "exited with code 1"))
    store.set_answered(Answer(OtaState.UPDATED, "v1.2"))
    outbox = data / OUTBOX_DIR_NAME
    write_entry(outbox, 1, ota=True)
    write_entry(outbox, 2)
    (outbox / "corrupt").mkdir()
    (outbox / "corrupt" / "junk").write_text("kept aside earlier")
    mark = mark_path(outbox)
    mark.parent.mkdir()
    mark.write_bytes(format_mark(int((NOW - 60) * 1000)))

    checks = doctor(data)

    all_ok(checks)
    assert "v1.2 was launched last" in only(checks, "version file").detail
    summary = only(checks, "state files").detail
    assert "v1.2, v1.1" in summary and "failed: v1.3" in summary and "UPDATED v1.2" in summary
    assert "2 message(s) waiting" in only(checks, "outbox").detail
    assert "1 OTA state report" in only(checks, "outbox").detail
    assert "60 s ago" in only(checks, "timestamp mark").detail


def test_settings_give_the_data_path_and_the_default_version(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    checks = doctor(Settings(data_path=str(data), default_version="v1.0"))

    all_ok(checks)
    assert "the default version v1.0 runs" in only(checks, "version file").detail


# -- the data directory ---------------------------------------------------------------------


def test_a_missing_data_directory_will_be_created_and_is_not_created_now(tmp_path: Path) -> None:
    data = tmp_path / "a" / "data"

    checks = doctor(data, watch=tmp_path)

    all_ok(checks)
    assert [check.name for check in checks] == ["data directory", "lock"]
    assert "will be created at first start" in checks[0].detail
    assert not (tmp_path / "a").exists()


def test_a_missing_data_directory_under_a_file_fails(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("in the way")
    data = tmp_path / "a" / "data"

    check = failure(doctor(data), "data directory", tmp_path / "a")
    assert f"remove or rename {tmp_path / 'a'}" in check.fix


def test_a_missing_data_directory_in_an_unwritable_parent_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False)

    check = failure(doctor(data), "data directory", data)
    assert "not writable" in check.detail and f"mkdir -p {data}" in check.fix


def test_a_data_path_that_is_a_file_fails(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_text("not a directory")

    checks = doctor(data)

    check = failure(checks, "data directory", data)
    assert "not a directory" in check.detail and "GATEWAY_DATA_PATH" in check.fix
    assert [c.name for c in checks] == ["data directory", "lock"]


def test_an_unwritable_data_directory_fails(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda path, mode, **kw: Path(path) != data and real_access(path, mode)
    )

    check = failure(doctor(data), "data directory", data)
    assert "not writable" in check.detail and f"chmod u+rwx {data}" in check.fix


def test_a_read_only_file_system_fails(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "statvfs", lambda path: fake_statvfs(read_only=True))

    check = failure(doctor(data), "data directory", data)
    assert "read-only file system" in check.detail and "remount" in check.fix


def test_a_full_file_system_says_how_much_is_free(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "statvfs", lambda path: fake_statvfs(free=512 * 1024))

    check = failure(doctor(data), "data directory", data)
    assert "512 KiB free" in check.detail and "free space" in check.fix


def test_a_missing_data_directory_on_a_read_only_file_system_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    monkeypatch.setattr(os, "statvfs", lambda path: fake_statvfs(read_only=True))

    failure(doctor(data), "data directory", data)


# -- the records ----------------------------------------------------------------------------


@pytest.mark.parametrize("content", ["", "  \n", "not a version!"], ids=["empty", "blank", "bad"])
def test_an_unusable_version_file_fails_with_how_to_write_it(data: Path, content: str) -> None:
    path = data / LAST_LAUNCHED_FILE
    path.write_text(content)

    check = failure(doctor(data), "version file", path)
    assert f"echo v1.2.3 > {path}" in check.fix and "delete it" in check.fix


def test_a_directory_in_place_of_the_version_file_fails(data: Path) -> None:
    path = data / LAST_LAUNCHED_FILE
    path.mkdir()

    check = failure(doctor(data), "version file", path)
    assert "is a directory" in check.detail and f"rm -r {path}" in check.fix


@pytest.mark.parametrize(
    ("name", "content"),
    [
        (FAILED_FILE, "{garbage"),
        (FAILED_FILE, "[1, 2]"),
        (FAILED_FILE, '{"version": 3, "error": "x"}'),
        (ANSWER_FILE, "\xff not json"),
        (ANSWER_FILE, '{"state": "DOWNLOADING", "version": "v1"}'),
        (KNOWN_GOOD_HISTORY_FILE, '{"versions": "v1.2"}'),
        (KNOWN_GOOD_HISTORY_FILE, '{"versions": ["../etc"]}'),
        (KNOWN_GOOD_FILE, "not a version!"),
        (PREVIOUS_KNOWN_GOOD_FILE, ""),
    ],
)
def test_a_corrupt_record_fails_and_is_left_in_place(data: Path, name: str, content: str) -> None:
    path = data / name
    path.write_text(content)

    check = failure(doctor(data), "state file", path)
    assert "the gateway ignores it" in check.detail
    assert f"rm {path}" in check.fix


@pytest.mark.parametrize(
    "name", [FAILED_FILE, ANSWER_FILE, KNOWN_GOOD_HISTORY_FILE, KNOWN_GOOD_FILE]
)
def test_a_directory_in_place_of_a_record_fails(data: Path, name: str) -> None:
    path = data / name
    path.mkdir()

    check = failure(doctor(data), "state file", path)
    assert "is a directory" in check.detail and f"rm -r {path}" in check.fix


# -- the journal ----------------------------------------------------------------------------


def journal(phase: JournalPhase = JournalPhase.SWAPPING) -> UpdateJournal:
    return UpdateJournal(target="v1.2", previous="v1.1", phase=phase, started_at=NOW - 30)


def test_an_interrupted_update_is_reported_as_recovered_at_the_next_start(
    data: Path, store: FileVersionStore
) -> None:
    store.write_journal(journal())

    checks = doctor(data)

    all_ok(checks)
    detail = only(checks, "update journal").detail
    assert "an update to v1.2 from v1.1 was interrupted in phase SWAPPING" in detail
    assert "the next start recovers it" in detail


def test_a_journal_while_the_runner_runs_is_an_update_in_progress(
    data: Path, store: FileVersionStore, lock: ProcessLock
) -> None:
    store.write_journal(journal(JournalPhase.HEALTH_CHECK))

    checks = doctor(data)

    all_ok(checks)
    assert "is in progress: phase HEALTH_CHECK" in only(checks, "update journal").detail


@pytest.mark.parametrize(
    "content", ["{garbage", "[]", '{"target": "v1", "phase": "NOPE", "started_at": 1}']
)
def test_a_corrupt_journal_fails_and_is_not_moved_aside(data: Path, content: str) -> None:
    path = data / JOURNAL_FILE
    path.write_text(content)

    check = failure(doctor(data), "update journal", path)
    assert "corrupt" in check.detail and f"rm {path}" in check.fix
    assert path.read_text() == content


def test_a_directory_in_place_of_the_journal_fails(data: Path) -> None:
    path = data / JOURNAL_FILE
    path.mkdir()

    check = failure(doctor(data), "update journal", path)
    assert "is a directory" in check.detail and f"rm -r {path}" in check.fix


# -- the outbox and the timestamp mark ------------------------------------------------------


def test_an_outbox_that_is_a_file_fails(data: Path) -> None:
    outbox = data / OUTBOX_DIR_NAME
    outbox.write_text("in the way")

    check = failure(doctor(data), "outbox", outbox)
    assert "kept in memory only" in check.detail and f"rm {outbox}" in check.fix


def test_an_unwritable_outbox_fails(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outbox = data / OUTBOX_DIR_NAME
    write_entry(outbox, 1)
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode, **kw: Path(p) != outbox and real_access(p, mode)
    )

    check = failure(doctor(data), "outbox", outbox)
    assert "not writable" in check.detail and f"chmod u+rwx {outbox}" in check.fix


def test_an_outbox_entry_that_is_a_directory_fails(data: Path) -> None:
    outbox = data / OUTBOX_DIR_NAME
    write_entry(outbox, 1)
    in_the_way = outbox / entry_file_name(2, True)
    in_the_way.mkdir()

    checks = doctor(data)

    check = failure(checks, "outbox entries", in_the_way)
    assert "directory with an entry's name" in check.detail and "rm -r" in check.fix
    assert "1 message(s) waiting" in only(checks, "outbox").detail


def test_unparseable_outbox_entries_fail_and_stay_where_they_are(data: Path) -> None:
    outbox = data / OUTBOX_DIR_NAME
    good = write_entry(outbox, 1)
    truncated = write_entry(outbox, 2)
    truncated.write_bytes(truncated.read_bytes()[:-3])
    stranger = outbox / "notes.txt"
    stranger.write_text("not an entry")
    (outbox / f".{entry_file_name(3, False)}.tmp-abc").write_text("a write in progress")

    checks = doctor(data)

    check = failure(checks, "outbox entries", truncated)
    assert "2 bad entries" in check.detail and str(stranger) in check.detail
    assert str(good) not in check.detail
    assert "1 message(s) waiting" in only(checks, "outbox").detail
    assert truncated.exists() and stranger.exists()


def test_a_timestamp_mark_far_ahead_of_the_clock_fails(data: Path) -> None:
    mark = mark_path(data / OUTBOX_DIR_NAME)
    mark.parent.mkdir(parents=True)
    mark.write_bytes(format_mark(int((NOW + 2 * 86400) * 1000)))

    check = failure(doctor(data), "timestamp mark", mark)
    assert "2.0 days ahead of the clock" in check.detail
    assert "discards" in check.fix and f"rm {mark}" in check.fix


def test_a_timestamp_mark_a_little_ahead_is_kept(data: Path) -> None:
    mark = mark_path(data / OUTBOX_DIR_NAME)
    mark.parent.mkdir(parents=True)
    mark.write_bytes(format_mark(int((NOW + 3600) * 1000)))

    checks = doctor(data)

    all_ok(checks)
    assert "3600 s ahead of the clock (kept)" in only(checks, "timestamp mark").detail


@pytest.mark.parametrize("shape", ["garbage", "directory", "link-is-a-file"])
def test_an_unusable_timestamp_mark_fails(data: Path, shape: str) -> None:
    mark = mark_path(data / OUTBOX_DIR_NAME)
    mark.parent.parent.mkdir()
    if shape == "link-is-a-file":
        mark.parent.write_text("in the way")
        expected = mark.parent
    else:
        mark.parent.mkdir()
        if shape == "directory":
            mark.mkdir()
        else:
            mark.write_text("soon")
        expected = mark

    check = failure(doctor(data), "timestamp mark", expected)
    assert str(expected) in check.fix


# -- the lock -------------------------------------------------------------------------------


def test_a_directory_in_place_of_the_lock_file_fails(data: Path) -> None:
    path = data / LOCK_NAME
    path.mkdir()

    check = failure(doctor(data), "lock", path)
    assert "lock socket" in check.detail and f"rm -r {path}" in check.fix


def test_an_unopenable_lock_file_fails(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = data / LOCK_NAME
    path.write_text("")
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode, **kw: Path(p) != path and real_access(p, mode)
    )

    check = failure(doctor(data), "lock", path)
    assert f"chmod 644 {path}" in check.fix


def test_a_running_runner_is_named_with_its_pid(data: Path, lock: ProcessLock) -> None:
    checks = doctor(data)

    all_ok(checks)
    assert f"the runner (pid {os.getpid()}) manages {data}" in only(checks, "lock").detail


@pytest.mark.parametrize("held", [True, False], ids=["running", "stopped"])
def test_without_proc_the_lock_socket_is_probed_and_left_free(
    data: Path, monkeypatch: pytest.MonkeyPatch, held: bool
) -> None:
    monkeypatch.setattr(doctor_lock, "PROC_NET_UNIX", data.parent / "no-proc")
    lock = ProcessLock(data)
    if held:
        lock.acquire()
    try:
        detail = only(doctor(data), "lock").detail
    finally:
        lock.release()

    assert ("the runner (pid" in detail) is held
    lock.acquire()  # the probe left the name free
    lock.release()


def test_the_doctor_writes_nothing_even_with_leftover_temporary_files(
    data: Path, store: FileVersionStore
) -> None:
    """Opening the store removes temporary files older than two minutes; the doctor's
    reads must not."""
    store.set_last_launched("v1.2")
    leftover = data / f".{LAST_LAUNCHED_FILE}.tmp-abc"
    leftover.write_text("v9")
    old = time.time() - 3600
    os.utime(leftover, (old, old))

    all_ok(doctor(data))
    assert leftover.exists()


def test_a_corrupt_record_of_what_tags_named_is_reported(tmp_path: Path) -> None:
    """resolved_versions.json (the moved-tag policy's record) with an entry the store would
    skip: the doctor says so, and a good one passes."""
    data = tmp_path / "data"
    data.mkdir()
    (data / RESOLVED_FILE).write_text(json.dumps({"versions": {"v1.1": "not-a-commit"}}))
    bad = [c for c in state_checks(data) if not c.ok and str(data / RESOLVED_FILE) in c.detail]
    assert bad and bad[0].fix, list(state_checks(data))
    (data / RESOLVED_FILE).write_text(json.dumps({"versions": {"v1.1": "a" * 40}}))
    assert not [c for c in state_checks(data) if str(data / RESOLVED_FILE) in c.detail]
