"""DurableOutbox on real files (tmp_path): order, bound, restart persistence, corruption."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from teg_ota.adapters.mqtt import outbox_bound
from teg_ota.adapters.mqtt.outbox import (
    MAX_ENTRY_BYTES,
    DurableOutbox,
    decode_entry,
    encode_entry,
)

TOPIC = "v1/devices/me/telemetry"


def payloads(outbox: DurableOutbox) -> list[bytes]:
    return [entry.payload for entry in outbox.entries()]


def drain(outbox: DurableOutbox) -> list[bytes]:
    out: list[bytes] = []
    while (entry := outbox.peek()) is not None:
        out.append(entry.payload)
        outbox.remove(entry.seq)
    return out


def msg_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.is_file())


def test_fifo_order_and_removal(tmp_path: Path) -> None:
    outbox = DurableOutbox(tmp_path / "outbox")
    seqs = [outbox.append(TOPIC, f"m{i}".encode()) for i in range(5)]
    assert seqs == sorted(seqs)
    assert len(outbox) == 5
    head = outbox.peek()
    assert head is not None
    assert (head.topic, head.payload, head.seq) == (TOPIC, b"m0", seqs[0])
    assert outbox.peek() == head  # peek does not consume: the in-flight entry stays durable
    outbox.remove(head.seq)
    outbox.remove(head.seq)  # idempotent
    assert drain(outbox) == [b"m1", b"m2", b"m3", b"m4"]
    assert len(outbox) == 0
    assert outbox.peek() is None
    assert msg_files(tmp_path / "outbox") == []


def test_one_file_per_message_named_by_sequence(tmp_path: Path) -> None:
    outbox = DurableOutbox(tmp_path)
    outbox.append(TOPIC, b"a")
    outbox.append(TOPIC, b"b", ota_state=True)
    assert msg_files(tmp_path) == [
        "00000000000000000001-tel.msg",
        "00000000000000000002-ota.msg",
    ]
    assert decode_entry((tmp_path / "00000000000000000002-ota.msg").read_bytes()) == (TOPIC, b"b")


def test_restart_sees_pending_messages_in_order(tmp_path: Path) -> None:
    first = DurableOutbox(tmp_path)
    for i in range(12):  # > 9 so that lexical and numeric order would differ without padding
        first.append(TOPIC if i % 2 else "other/topic", f"m{i}".encode(), ota_state=i == 3)
    head = first.peek()
    assert head is not None
    first.remove(head.seq)  # delivered before the "crash"
    in_flight = first.peek()  # sent, no PUBACK yet when the process died
    del first

    second = DurableOutbox(tmp_path)
    assert len(second) == 11
    assert second.peek() == in_flight  # the in-flight message is re-sent: at-least-once
    entries = second.entries()
    assert [e.payload for e in entries] == [f"m{i}".encode() for i in range(1, 12)]
    assert [e.ota_state for e in entries] == [i == 3 for i in range(1, 12)]
    assert entries[1].topic == "other/topic"
    new_seq = second.append(TOPIC, b"after-restart")
    assert new_seq > entries[-1].seq
    assert drain(second)[-1] == b"after-restart"


def test_in_data_path_uses_outbox_subdirectory(tmp_path: Path) -> None:
    outbox = DurableOutbox.in_data_path(tmp_path / "data")
    outbox.append(TOPIC, b"x")
    assert outbox.directory == tmp_path / "data" / "outbox"
    assert len(msg_files(tmp_path / "data" / "outbox")) == 1


def test_bound_drops_oldest_telemetry_first_and_warns(tmp_path: Path, log_lines: list[str]) -> None:
    outbox = DurableOutbox(tmp_path, max_messages=5)
    outbox.append(TOPIC, b"ota0", ota_state=True)
    for i in range(4):
        outbox.append(TOPIC, f"t{i}".encode())
    outbox.append(TOPIC, b"ota1", ota_state=True)  # full: t0 goes
    outbox.append(TOPIC, b"t4")  # full: t1 goes
    assert len(outbox) == 5
    assert payloads(outbox) == [b"ota0", b"t2", b"t3", b"ota1", b"t4"]
    assert outbox.dropped_total == 2
    warnings = [line for line in log_lines if "is full" in line]
    assert warnings, log_lines
    assert "dropped the 1 oldest" in warnings[0]
    assert "WARNING" in warnings[0]
    assert len(msg_files(tmp_path)) == 5


def test_drop_warnings_are_rate_limited_but_counted(
    tmp_path: Path, log_lines: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox = DurableOutbox(tmp_path, max_messages=2)
    for i in range(10):
        outbox.append(TOPIC, f"t{i}".encode())
    assert outbox.dropped_total == 8
    assert len([line for line in log_lines if "is full" in line]) == 1
    monkeypatch.setattr(outbox_bound, "DROP_WARNING_INTERVAL_S", 0.0)
    outbox.append(TOPIC, b"t10")
    last = [line for line in log_lines if "is full" in line][-1]
    assert "dropped the 8 oldest" in last  # 7 unreported + this one
    assert "(9 since start)" in last
    assert payloads(outbox) == [b"t9", b"t10"]


def test_ota_states_go_last_and_oldest_first(tmp_path: Path) -> None:
    outbox = DurableOutbox(tmp_path, max_messages=3)
    for i in range(3):
        outbox.append(TOPIC, f"ota{i}".encode(), ota_state=True)
    outbox.append(TOPIC, b"tel")  # the only telemetry is the newest: it goes itself
    assert payloads(outbox) == [b"ota0", b"ota1", b"ota2"]
    outbox.append(TOPIC, b"ota3", ota_state=True)  # nothing but OTA states: oldest goes
    assert payloads(outbox) == [b"ota1", b"ota2", b"ota3"]


def test_bound_applies_when_reopened_with_a_smaller_limit(tmp_path: Path) -> None:
    big = DurableOutbox(tmp_path, max_messages=10)
    big.append(TOPIC, b"ota", ota_state=True)
    for i in range(6):
        big.append(TOPIC, f"t{i}".encode())
    small = DurableOutbox(tmp_path, max_messages=3)
    assert payloads(small) == [b"ota", b"t4", b"t5"]
    assert len(msg_files(tmp_path)) == 3


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: b"garbage", id="garbage"),
        pytest.param(lambda data: data[:-3], id="truncated-payload"),
        pytest.param(lambda data: data[:-1] + bytes([data[-1] ^ 0xFF]), id="flipped-bit"),
        pytest.param(lambda data: b"", id="empty"),
        pytest.param(lambda data: data[:10], id="truncated-header"),
    ],
)
def test_corrupt_entry_is_moved_aside(tmp_path: Path, damage, log_lines: list[str]) -> None:
    outbox = DurableOutbox(tmp_path)
    for i in range(3):
        outbox.append(TOPIC, f"payload-{i}".encode())
    victim = tmp_path / "00000000000000000002-tel.msg"
    victim.write_bytes(damage(victim.read_bytes()))

    reopened = DurableOutbox(tmp_path)
    assert drain(reopened) == [b"payload-0", b"payload-2"]
    assert (tmp_path / "corrupt" / victim.name).exists()
    assert not victim.exists()
    assert any("moved aside" in line for line in log_lines)


def test_oversized_entry_is_moved_aside(tmp_path: Path, log_lines: list[str]) -> None:
    outbox = DurableOutbox(tmp_path)
    for i in range(3):
        outbox.append(TOPIC, f"payload-{i}".encode())
    victim = tmp_path / "00000000000000000002-tel.msg"
    victim.write_bytes(encode_entry(TOPIC, b"x" * MAX_ENTRY_BYTES))  # well-formed, too large

    assert drain(DurableOutbox(tmp_path)) == [b"payload-0", b"payload-2"]
    assert (tmp_path / "corrupt" / victim.name).exists()
    assert any("too large" in line and "moved aside" in line for line in log_lines)


def test_an_entry_that_vanished_is_skipped(tmp_path: Path, log_lines: list[str]) -> None:
    outbox = DurableOutbox(tmp_path)
    for i in range(3):
        outbox.append(TOPIC, f"payload-{i}".encode())
    (tmp_path / "00000000000000000002-tel.msg").unlink()

    assert drain(outbox) == [b"payload-0", b"payload-2"]
    assert len(outbox) == 0
    assert any("vanished" in line for line in log_lines)


def test_a_directory_in_place_of_an_entry_is_moved_aside(tmp_path: Path) -> None:
    outbox = DurableOutbox(tmp_path)
    for i in range(3):
        outbox.append(TOPIC, f"payload-{i}".encode())
    victim = tmp_path / "00000000000000000002-tel.msg"
    victim.unlink()
    victim.mkdir()

    assert drain(outbox) == [b"payload-0", b"payload-2"]
    assert (tmp_path / "corrupt" / victim.name).is_dir()


def test_corrupt_head_is_skipped_by_peek(tmp_path: Path) -> None:
    outbox = DurableOutbox(tmp_path)
    outbox.append(TOPIC, b"bad")
    outbox.append(TOPIC, b"good")
    (tmp_path / "00000000000000000001-tel.msg").write_bytes(b"TEGOBX1\n{not json\nbad")
    head = outbox.peek()
    assert head is not None
    assert head.payload == b"good"
    assert len(outbox) == 1
    assert (tmp_path / "corrupt" / "00000000000000000001-tel.msg").exists()


def test_stray_and_temporary_files_at_open(tmp_path: Path) -> None:
    outbox = DurableOutbox(tmp_path)
    outbox.append(TOPIC, b"kept")
    (tmp_path / "notes.txt").write_text("not an entry")
    # What a crash between write and rename leaves: never acknowledged, so removed.
    (tmp_path / ".00000000000000000002-tel.msg.tmp-abc123").write_bytes(b"half")
    reopened = DurableOutbox(tmp_path)
    assert payloads(reopened) == [b"kept"]
    assert (tmp_path / "corrupt" / "notes.txt").exists()
    assert msg_files(tmp_path) == ["00000000000000000001-tel.msg"]


def test_entry_round_trip_binary_payload() -> None:
    payload = bytes(range(256)) + b"\n\n"
    assert decode_entry(encode_entry("a/b", payload)) == ("a/b", payload)


def test_a_removed_outbox_directory_is_created_again(tmp_path: Path) -> None:
    outbox = DurableOutbox(tmp_path / "outbox")
    outbox.append(TOPIC, b"one")
    shutil.rmtree(tmp_path / "outbox")
    seq = outbox.append(TOPIC, b"two")  # no exception: the directory comes back
    assert outbox.degraded is None and outbox.in_memory == 0
    assert msg_files(tmp_path / "outbox") == [f"{seq:020d}-tel.msg"]
    assert drain(outbox) == [b"two"]  # "one" went with the directory: it vanished


def test_concurrent_appends_keep_per_thread_order(tmp_path: Path) -> None:
    outbox = DurableOutbox(tmp_path)
    threads_count, per_thread = 4, 50
    barrier = threading.Barrier(threads_count)

    def worker(n: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            outbox.append(TOPIC, f"{n}:{i}".encode())

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    entries = DurableOutbox(tmp_path).entries()
    assert len(entries) == threads_count * per_thread
    assert len({e.seq for e in entries}) == len(entries)
    for n in range(threads_count):
        mine = [e.payload.decode() for e in entries if e.payload.startswith(f"{n}:".encode())]
        assert mine == [f"{n}:{i}" for i in range(per_thread)]
