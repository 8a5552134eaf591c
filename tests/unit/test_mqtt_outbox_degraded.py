"""DurableOutbox when the disk cannot hold it (issue 17, "degraded but alive"), on real files
in tmp_path: a file where the directory should be, a full disk (``write_atomic`` made to
fail with ENOSPC for a while), undeletable files, directories with an entry's name. No
report is lost to the disk alone, the order stays strict, and the log says it twice: once
when persisting stops, once when it works again.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path

import pytest
from loguru import logger

from teg_ota.adapters.atomic_file import write_atomic
from teg_ota.adapters.mqtt import outbox as outbox_module
from teg_ota.adapters.mqtt import outbox_files, outbox_health
from teg_ota.adapters.mqtt.outbox import DurableOutbox
from teg_ota.adapters.mqtt.outbox_bound import victim_index
from teg_ota.adapters.mqtt.outbox_files import OutboxFiles, Slot
from teg_ota.adapters.mqtt.outbox_format import decode_entry, entry_file_name

TOPIC = "v1/devices/me/telemetry"


class Disk:
    """Stands in for ``write_atomic`` in outbox_files: full while ``full`` is set, or for
    the entry names in ``refused``; writes for real otherwise."""

    def __init__(self) -> None:
        self.full = False
        self.refused: set[str] = set()
        self.attempts = 0

    def __call__(self, path: Path, data: bytes) -> None:
        self.attempts += 1
        if self.full or path.name in self.refused:
            raise OSError(errno.ENOSPC, "No space left on device")
        write_atomic(path, data)


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> Disk:
    fake = Disk()
    monkeypatch.setattr(outbox_files, "write_atomic", fake)
    return fake


@pytest.fixture
def logs() -> Iterator[list[tuple[str, str]]]:
    """``(level, message)`` of everything teg_ota logs at INFO and above."""
    records: list[tuple[str, str]] = []
    logger.enable("teg_ota")
    sink = logger.add(
        lambda m: records.append((m.record["level"].name, m.record["message"])), level="INFO"
    )
    yield records
    logger.remove(sink)


def errors(logs: list[tuple[str, str]]) -> list[str]:
    return [message for level, message in logs if level == "ERROR"]


def payloads(outbox: DurableOutbox) -> list[bytes]:
    return [entry.payload for entry in outbox.entries()]


def drain(outbox: DurableOutbox) -> list[bytes]:
    """What the sender does: peek the head, deliver it, remove it after the PUBACK."""
    out: list[bytes] = []
    while (entry := outbox.peek()) is not None:
        out.append(entry.payload)
        outbox.remove(entry.seq)
    return out


def on_disk(directory: Path) -> list[bytes]:
    """The payloads of the entry files, in file-name order."""
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix == ".msg")
    return [decode_entry(p.read_bytes())[1] for p in files]


# --------------------------------------------------------------------------- unusable directory


def test_a_file_where_the_outbox_directory_should_be_runs_in_memory(
    tmp_path: Path, logs: list[tuple[str, str]]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "outbox").write_text("left here by mistake")
    outbox = DurableOutbox.in_data_path(data)  # does not raise
    assert outbox.degraded is not None
    assert outbox.in_memory == 0 and len(outbox) == 0
    for i in range(5):
        outbox.append(TOPIC, f"m{i}".encode(), ota_state=i == 2)
    assert (len(outbox), outbox.in_memory) == (5, 5)
    assert [e.ota_state for e in outbox.entries()] == [False, False, True, False, False]
    assert drain(outbox) == [f"m{i}".encode() for i in range(5)]
    assert (data / "outbox").read_text() == "left here by mistake"  # not touched
    [error] = errors(logs)  # one error, not one per message
    assert str(data / "outbox") in error
    assert f"remove the file {data / 'outbox'}" in error
    assert "keeping up to 10000 messages in memory" in error.lower()


def test_persisting_resumes_once_the_file_in_the_way_is_gone(
    tmp_path: Path, logs: list[tuple[str, str]]
) -> None:
    blocker = tmp_path / "outbox"
    blocker.write_text("x")
    outbox = DurableOutbox(blocker)
    outbox.append(TOPIC, b"a")
    outbox.append(TOPIC, b"b")
    blocker.unlink()
    outbox.append(TOPIC, b"c")  # opens the directory, writes a and b, then c
    assert outbox.degraded is None and outbox.in_memory == 0
    assert on_disk(blocker) == [b"a", b"b", b"c"]
    assert payloads(DurableOutbox(blocker)) == [b"a", b"b", b"c"]  # a restart keeps them
    assert any("persists again (2 message(s)" in m for level, m in logs if level == "INFO")
    assert len(errors(logs)) == 1


def test_a_parent_that_is_a_file_is_named_in_the_fix(
    tmp_path: Path, logs: list[tuple[str, str]]
) -> None:
    (tmp_path / "data").write_text("not a directory")
    outbox = DurableOutbox.in_data_path(tmp_path / "data")
    outbox.append(TOPIC, b"kept")
    assert payloads(outbox) == [b"kept"]
    [error] = errors(logs)
    assert f"remove the file {tmp_path / 'data'}" in error


def test_a_programming_error_still_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_messages"):
        DurableOutbox(tmp_path / "file-or-not", max_messages=0)
    with pytest.raises(ValueError, match="topic"):
        DurableOutbox(tmp_path).append("", b"x")


# --------------------------------------------------------------------------- full disk


def test_a_full_disk_keeps_reports_in_memory_then_writes_them_in_order(
    tmp_path: Path, disk: Disk, logs: list[tuple[str, str]]
) -> None:
    outbox = DurableOutbox(tmp_path)
    outbox.append(TOPIC, b"d1")
    outbox.append(TOPIC, b"d2", ota_state=True)
    assert outbox.degraded is None
    disk.full = True
    for name in (b"m3", b"m4", b"m5"):
        outbox.append(TOPIC, name)  # does not raise
    assert outbox.degraded is not None and "No space left on device" in outbox.degraded
    assert (len(outbox), outbox.in_memory) == (5, 3)
    assert payloads(outbox) == [b"d1", b"d2", b"m3", b"m4", b"m5"]
    assert on_disk(tmp_path) == [b"d1", b"d2"]
    [error] = errors(logs)
    assert "cannot persist" in error and str(tmp_path) in error
    assert "free space on the file system" in error
    assert "keeping up to 10000 messages in memory until it can" in error.lower()

    disk.full = False
    outbox.append(TOPIC, b"d6")
    assert outbox.degraded is None and outbox.in_memory == 0
    assert on_disk(tmp_path) == [b"d1", b"d2", b"m3", b"m4", b"m5", b"d6"]
    infos = [m for level, m in logs if level == "INFO" and "persists again" in m]
    assert len(infos) == 1 and "(3 message(s)" in infos[0]
    assert len(errors(logs)) == 1
    reopened = DurableOutbox(tmp_path)
    assert payloads(reopened) == [b"d1", b"d2", b"m3", b"m4", b"m5", b"d6"]
    assert [e.ota_state for e in reopened.entries()] == [False, True, False, False, False, False]


def test_while_memory_entries_wait_new_ones_queue_behind_them(tmp_path: Path, disk: Disk) -> None:
    """Order is strict: an entry whose own write would work still waits behind the one
    that cannot be written, in memory."""
    outbox = DurableOutbox(tmp_path)
    outbox.append(TOPIC, b"d1")
    disk.refused = {entry_file_name(2, False)}
    outbox.append(TOPIC, b"m2")
    outbox.append(TOPIC, b"m3")  # its own file could be written: it is not
    assert outbox.in_memory == 2
    assert on_disk(tmp_path) == [b"d1"]
    disk.refused = set()
    outbox.append(TOPIC, b"d4")
    assert outbox.in_memory == 0
    assert on_disk(tmp_path) == [b"d1", b"m2", b"m3", b"d4"]


def test_memory_entries_are_delivered_like_durable_ones(tmp_path: Path, disk: Disk) -> None:
    outbox = DurableOutbox(tmp_path)
    outbox.append(TOPIC, b"d1")
    disk.full = True
    seqs = [outbox.append(TOPIC, f"m{i}".encode()) for i in range(2, 5)]
    assert seqs == sorted(seqs) and seqs[0] > 1
    assert drain(outbox) == [b"d1", b"m2", b"m3", b"m4"]
    assert (len(outbox), outbox.in_memory) == (0, 0)
    assert on_disk(tmp_path) == []
    assert outbox.degraded is not None  # nothing has been written since it failed
    outbox.remove(seqs[0])  # already gone: no-op
    disk.full = False
    outbox.append(TOPIC, b"d5")
    assert outbox.degraded is None and on_disk(tmp_path) == [b"d5"]


def test_removing_a_memory_entry_from_the_middle(tmp_path: Path, disk: Disk) -> None:
    """The link drops a superseded current_sw_* report wherever it is."""
    outbox = DurableOutbox(tmp_path)
    disk.full = True
    first = outbox.append(TOPIC, b"a")
    middle = outbox.append(TOPIC, b"b")
    outbox.append(TOPIC, b"c")
    outbox.remove(middle)
    assert payloads(outbox) == [b"a", b"c"]
    outbox.remove(first)
    disk.full = False
    outbox.append(TOPIC, b"d")
    assert on_disk(tmp_path) == [b"c", b"d"]


def test_peek_retries_persisting_at_most_every_few_seconds(
    tmp_path: Path, disk: Disk, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox = DurableOutbox(tmp_path)
    disk.full = True
    outbox.append(TOPIC, b"m1")
    outbox.append(TOPIC, b"m2")
    attempts = disk.attempts
    disk.full = False
    for _ in range(10):
        assert outbox.peek() is not None
    assert disk.attempts == attempts  # within RETRY_INTERVAL_S: no retry
    assert outbox.in_memory == 2
    monkeypatch.setattr(outbox_health, "RETRY_INTERVAL_S", 0.0)
    head = outbox.peek()  # due now: both go to disk, the head is read back from it
    assert head is not None and head.payload == b"m1"
    assert (outbox.in_memory, outbox.degraded) == (0, None)
    assert on_disk(tmp_path) == [b"m1", b"m2"]


def test_the_bound_covers_memory_entries_with_the_same_drop_rules(
    tmp_path: Path, disk: Disk
) -> None:
    outbox = DurableOutbox(tmp_path, max_messages=3)
    outbox.append(TOPIC, b"ota0", ota_state=True)
    outbox.append(TOPIC, b"tel1")
    disk.full = True
    outbox.append(TOPIC, b"tel2")
    outbox.append(TOPIC, b"ota3", ota_state=True)  # full: the oldest telemetry (durable) goes
    assert payloads(outbox) == [b"ota0", b"tel2", b"ota3"]
    assert on_disk(tmp_path) == [b"ota0"]  # its file too
    outbox.append(TOPIC, b"tel4")  # the oldest telemetry now lives in memory
    assert payloads(outbox) == [b"ota0", b"ota3", b"tel4"]
    outbox.append(TOPIC, b"ota5", ota_state=True)
    assert payloads(outbox) == [b"ota0", b"ota3", b"ota5"]
    outbox.append(TOPIC, b"ota6", ota_state=True)  # only OTA states: the oldest goes
    assert payloads(outbox) == [b"ota3", b"ota5", b"ota6"]
    assert on_disk(tmp_path) == []
    assert outbox.dropped_total == 4
    assert (len(outbox), outbox.in_memory) == (3, 3)
    outbox.append(TOPIC, b"tel7")  # new telemetry, only OTA states else: it goes itself
    assert payloads(outbox) == [b"ota3", b"ota5", b"ota6"]


def test_victim_is_the_oldest_telemetry_else_the_oldest() -> None:
    assert victim_index([True, False, False]) == 1
    assert victim_index([True, True]) == 0
    assert victim_index([False]) == 0
    assert victim_index(iter([True, True, False])) == 2


# --------------------------------------------------------------------------- undeletable files


def test_a_delivered_entry_whose_file_cannot_be_deleted_is_forgotten_and_deleted_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, logs: list[tuple[str, str]]
) -> None:
    """A read-only remount: the sender must not re-send the head for ever."""
    outbox = DurableOutbox(tmp_path)
    outbox.append(TOPIC, b"a")
    outbox.append(TOPIC, b"b")
    real_delete = OutboxFiles.delete

    def read_only(self: OutboxFiles, slot: Slot) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(self.path(slot)))

    monkeypatch.setattr(OutboxFiles, "delete", read_only)
    assert drain(outbox) == [b"a", b"b"]  # remove() did not raise: each went once
    assert len(outbox) == 0
    assert on_disk(tmp_path) == [b"a", b"b"]
    assert outbox.degraded is not None and "Read-only" in outbox.degraded
    [error] = errors(logs)
    assert "remount the file system" in error
    monkeypatch.setattr(OutboxFiles, "delete", real_delete)
    outbox.append(TOPIC, b"c")  # the disk is back: the leftovers go
    assert on_disk(tmp_path) == [b"c"]
    assert outbox.degraded is None


# --------------------------------------------------------------------------- directories in the way


def test_a_directory_with_an_entry_name_is_moved_aside_at_load(tmp_path: Path) -> None:
    blocker = tmp_path / entry_file_name(1, False)
    (blocker / "junk").mkdir(parents=True)
    outbox = DurableOutbox(tmp_path)
    assert not blocker.exists()
    assert (tmp_path / "corrupt" / blocker.name / "junk").is_dir()
    seq = outbox.append(TOPIC, b"x")
    assert outbox.degraded is None
    assert on_disk(tmp_path) == [b"x"]
    assert drain(DurableOutbox(tmp_path)) == [b"x"]
    assert seq == 1


def test_a_directory_that_cannot_be_moved_aside_is_skipped_and_never_numbered_onto(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = DurableOutbox(tmp_path)
    first.append(TOPIC, b"old")  # seq 1
    stuck = tmp_path / entry_file_name(5, True)
    stuck.mkdir()

    def cannot(self: OutboxFiles, path: Path) -> None:
        raise OSError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(OutboxFiles, "_replace_into_corrupt", cannot)
    outbox = DurableOutbox(tmp_path)
    assert payloads(outbox) == [b"old"]
    seq = outbox.append(TOPIC, b"new")
    assert seq == 6  # after the directory's number, whatever its kind
    assert outbox.degraded is None
    assert stuck.is_dir()
    assert on_disk(tmp_path) == [b"old", b"new"]


def test_a_directory_appearing_at_the_next_entry_name_does_not_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox = DurableOutbox(tmp_path)
    outbox.append(TOPIC, b"a")
    (tmp_path / entry_file_name(2, False)).mkdir()  # left by a fault while running
    outbox.append(TOPIC, b"b")  # moved aside, then written
    assert outbox.degraded is None and on_disk(tmp_path) == [b"a", b"b"]

    (tmp_path / entry_file_name(3, False)).mkdir()
    monkeypatch.setattr(
        OutboxFiles,
        "_replace_into_corrupt",
        lambda self, path: (_ for _ in ()).throw(OSError(errno.EACCES, "denied")),
    )
    outbox.append(TOPIC, b"c")  # cannot be written: kept in memory, still delivered
    assert outbox.in_memory == 1
    assert outbox.degraded is not None and entry_file_name(3, False) in outbox.degraded
    outbox.append(TOPIC, b"d")  # behind it, in memory
    assert drain(outbox) == [b"a", b"b", b"c", b"d"]


# --------------------------------------------------------------------------- catching up, advice


def test_a_long_backlog_is_written_back_a_batch_at_a_time(
    tmp_path: Path, disk: Disk, monkeypatch: pytest.MonkeyPatch, logs: list[tuple[str, str]]
) -> None:
    outbox = DurableOutbox(tmp_path)
    disk.full = True
    for i in range(70):
        outbox.append(TOPIC, b"%d" % i)
    disk.full = False
    outbox.append(TOPIC, b"70")  # 32 go to disk; the rest (and this one) wait their turn
    assert outbox.in_memory == 71 - outbox_module.WRITES_PER_CALL
    assert outbox.degraded is not None  # not caught up yet
    monkeypatch.setattr(outbox_health, "RETRY_INTERVAL_S", 0.0)
    while outbox.in_memory:
        outbox.peek()
    assert outbox.degraded is None
    assert on_disk(tmp_path) == [b"%d" % i for i in range(71)]
    [info] = [m for level, m in logs if level == "INFO" and "persists again" in m]
    assert "(71 message(s)" in info  # the one appended when the disk came back waited too


def test_a_retry_with_nothing_to_write_does_not_claim_recovery(
    tmp_path: Path, disk: Disk, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox = DurableOutbox(tmp_path)
    disk.full = True
    outbox.append(TOPIC, b"m")
    assert drain(outbox) == [b"m"]
    monkeypatch.setattr(outbox_health, "RETRY_INTERVAL_S", 0.0)
    disk.full = False
    assert outbox.peek() is None
    assert outbox.degraded is not None  # nothing was written: nothing is known to work
    outbox.append(TOPIC, b"n")
    assert outbox.degraded is None


def test_entries_that_appear_after_a_failed_open_are_left_for_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, logs: list[tuple[str, str]]
) -> None:
    """The directory could not be listed at start-up, then could: its entries from before
    are numbered independently of the memory ones, so they wait for a restart."""
    DurableOutbox(tmp_path).append(TOPIC, b"from-before")
    real_scan = OutboxFiles.scan

    def unlistable(self: OutboxFiles) -> outbox_files.Scan:
        raise PermissionError(errno.EACCES, "Permission denied", str(self.directory))

    monkeypatch.setattr(OutboxFiles, "scan", unlistable)
    outbox = DurableOutbox(tmp_path)
    outbox.append(TOPIC, b"m1")
    assert "Permission denied" in (outbox.degraded or "")
    assert "writable by the teg-ota user" in errors(logs)[0]
    monkeypatch.setattr(OutboxFiles, "scan", real_scan)
    outbox.append(TOPIC, b"m2")
    assert "restart teg-ota" in (outbox.degraded or "")
    assert drain(outbox) == [b"m1", b"m2"]
    outbox.append(TOPIC, b"m3")  # stays in memory, no more scanning
    assert outbox.in_memory == 1
    assert on_disk(tmp_path) == [b"from-before"]
    assert payloads(DurableOutbox(tmp_path)) == [b"from-before"]
    assert len(errors(logs)) == 2


@pytest.mark.parametrize(
    ("code", "advice"),
    [
        (errno.ENOSPC, "free space on the file system holding {d}"),
        (errno.EROFS, "remount the file system holding {d} read-write"),
        (errno.EACCES, "make {p} writable by the teg-ota user"),
        (errno.EIO, "check {d} and its file system"),
    ],
)
def test_the_fix_matches_the_reason(tmp_path: Path, code: int, advice: str) -> None:
    directory = tmp_path / "data" / "outbox"  # missing: the nearest existing is tmp_path
    fix = outbox_health.fix_for(directory, OSError(code, "x"))
    assert fix == advice.format(d=directory, p=tmp_path)
