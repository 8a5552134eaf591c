"""A bounded, durable, ordered FIFO of MQTT messages waiting for the broker's PUBACK.

Layout under the outbox directory (``$GATEWAY_DATA_PATH/outbox/``):

* one file per message, named and encoded as :mod:`teg_ota.adapters.mqtt.outbox_format`
  says (sorting the names sorts the messages);
* ``corrupt/``: entry files that could not be read back (and stray files), moved aside with
  a warning so the evidence is kept; at most :data:`MAX_CORRUPT_FILES` are kept.

Every entry is written with :func:`write_atomic` (temporary file, fsync, rename, fsync of
the directory) before :meth:`DurableOutbox.append` returns, and deleted (then the directory
fsynced) only by :meth:`DurableOutbox.remove`, which the sender calls after the PUBACK. So
a crash at any moment loses no message whose ``append`` returned, and re-sends at most the
message that was in flight (at-least-once). Temporary files of an ``append`` interrupted by
a crash never were acknowledged: they are removed when the outbox is opened.

Bound: at most ``max_messages`` entries. Appending to a full outbox drops the oldest
telemetry entry (the new one included); OTA state entries are dropped (oldest first) only
when nothing else is left. Drops are logged as warnings, at most one line per
:data:`DROP_WARNING_INTERVAL_S`, with the number dropped since the previous line.

All methods are thread-safe (one lock). One process owns a directory.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from loguru import logger

from teg_ota.adapters.atomic_file import TEMP_INFIX, ensure_dir, fsync_dir, write_atomic
from teg_ota.adapters.mqtt.outbox_format import (
    MAX_ENTRY_BYTES,
    CorruptEntry,
    decode_entry,
    encode_entry,
    entry_file_name,
    parse_entry_file_name,
)

__all__ = [
    "CORRUPT_DIR_NAME",
    "DEFAULT_MAX_MESSAGES",
    "DROP_WARNING_INTERVAL_S",
    "MAX_CORRUPT_FILES",
    "MAX_ENTRY_BYTES",
    "OUTBOX_DIR_NAME",
    "CorruptEntry",
    "DurableOutbox",
    "OutboxEntry",
    "decode_entry",
    "encode_entry",
]

OUTBOX_DIR_NAME = "outbox"
CORRUPT_DIR_NAME = "corrupt"
DEFAULT_MAX_MESSAGES = 10000
MAX_CORRUPT_FILES = 100
DROP_WARNING_INTERVAL_S = 60.0


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    seq: int
    topic: str
    payload: bytes
    ota_state: bool


@dataclass(frozen=True, slots=True)
class _Slot:
    seq: int
    ota_state: bool

    @property
    def name(self) -> str:
        return entry_file_name(self.seq, self.ota_state)


class DurableOutbox:
    """Durable FIFO of ``(topic, payload)``; see the module docstring for the guarantees.

    ``directory`` is created if missing. Raises :class:`OSError` if it cannot be created or
    listed. :meth:`append` raises :class:`OSError` when the entry cannot be written.
    """

    def __init__(self, directory: Path, max_messages: int = DEFAULT_MAX_MESSAGES) -> None:
        if max_messages < 1:
            raise ValueError("max_messages must be at least 1")
        self._dir = Path(directory)
        self._corrupt_dir = self._dir / CORRUPT_DIR_NAME
        self._max = max_messages
        self._lock = threading.Lock()
        self._slots: deque[_Slot] = deque()
        self._next_seq = 1
        self._dropped_total = 0
        self._dropped_unreported = 0
        self._last_drop_warning = float("-inf")
        ensure_dir(self._dir)
        self._load()

    @classmethod
    def in_data_path(
        cls, data_path: Path, max_messages: int = DEFAULT_MAX_MESSAGES
    ) -> DurableOutbox:
        """The outbox of a gateway: ``<data_path>/outbox/``."""
        return cls(Path(data_path) / OUTBOX_DIR_NAME, max_messages)

    # -- queries ----------------------------------------------------------------------------------
    @property
    def directory(self) -> Path:
        return self._dir

    @property
    def max_messages(self) -> int:
        return self._max

    @property
    def dropped_total(self) -> int:
        """Entries dropped by the bound since this object was created."""
        with self._lock:
            return self._dropped_total

    def __len__(self) -> int:
        with self._lock:
            return len(self._slots)

    def entries(self) -> list[OutboxEntry]:
        """Every pending entry in order (corrupt ones are moved aside and skipped)."""
        with self._lock:
            result: list[OutboxEntry] = []
            for slot in list(self._slots):
                entry = self._read(slot)
                if entry is not None:
                    result.append(entry)
            return result

    def peek(self) -> OutboxEntry | None:
        """The oldest pending entry, or ``None`` when empty. Corrupt heads are moved aside."""
        with self._lock:
            while self._slots:
                entry = self._read(self._slots[0])
                if entry is not None:
                    return entry
            return None

    # -- changes ----------------------------------------------------------------------------------
    def append(self, topic: str, payload: bytes, *, ota_state: bool = False) -> int:
        """Persist a message at the tail; returns its sequence number once it is durable."""
        if not topic:
            raise ValueError("empty topic")
        data = encode_entry(topic, bytes(payload))
        with self._lock:
            slot = _Slot(self._next_seq, ota_state)
            write_atomic(self._dir / slot.name, data)
            self._next_seq += 1
            self._slots.append(slot)
            # Written first, so a failed write drops nothing; the new entry is itself a
            # candidate (a new telemetry message goes before an old OTA state).
            self._report_drops(self._trim_to_bound())
            return slot.seq

    def remove(self, seq: int) -> None:
        """Forget a delivered entry (no-op if it is already gone). Raises :class:`OSError`
        only if the directory cannot be synced."""
        with self._lock:
            for index, slot in enumerate(self._slots):
                if slot.seq == seq:
                    del self._slots[index]
                    self._delete(slot)
                    return

    # -- internals (lock held) --------------------------------------------------------------------
    def _load(self) -> None:
        slots: list[_Slot] = []
        for path in self._dir.iterdir():
            name = path.name
            if path.is_dir():
                continue
            if name.startswith(".") and TEMP_INFIX in name:
                # An append that crashed before its rename: it never returned, so nothing
                # acknowledged is lost by removing it.
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            parsed = parse_entry_file_name(name)
            if parsed is None:
                logger.warning("Outbox: unexpected file {} moved aside", path)
                self._move_aside(path)
                continue
            slots.append(_Slot(*parsed))
        slots.sort(key=lambda slot: slot.seq)
        self._slots = deque(slots)
        if slots:
            self._next_seq = slots[-1].seq + 1
            logger.info("Outbox {}: {} message(s) pending from before", self._dir, len(slots))
        self._report_drops(self._trim_to_bound())

    def _read(self, slot: _Slot) -> OutboxEntry | None:
        """The entry of ``slot``; on failure the slot is removed (and the file moved aside)."""
        path = self._dir / slot.name
        try:
            size = path.stat().st_size
            if size > MAX_ENTRY_BYTES:
                raise CorruptEntry(f"{size} bytes is too large")
            topic, payload = decode_entry(path.read_bytes())
        except FileNotFoundError:
            logger.warning("Outbox entry {} vanished", path)
            self._slots.remove(slot)
            return None
        except (OSError, CorruptEntry) as exc:
            logger.warning("Outbox entry {} is unreadable ({}): moved aside", path, exc)
            self._slots.remove(slot)
            self._move_aside(path)
            return None
        return OutboxEntry(slot.seq, topic, payload, slot.ota_state)

    def _trim_to_bound(self) -> int:
        dropped = 0
        while len(self._slots) > self._max:
            self._drop_one()
            dropped += 1
        return dropped

    def _drop_one(self) -> None:
        victim = next((slot for slot in self._slots if not slot.ota_state), self._slots[0])
        self._slots.remove(victim)
        self._delete(victim)
        self._dropped_total += 1

    def _report_drops(self, dropped: int) -> None:
        if dropped == 0 and self._dropped_unreported == 0:
            return
        self._dropped_unreported += dropped
        now = time.monotonic()
        if now - self._last_drop_warning < DROP_WARNING_INTERVAL_S:
            return
        logger.warning(
            "Outbox {} is full ({} messages): dropped the {} oldest telemetry message(s) "
            "({} since start); OTA states are kept longest",
            self._dir,
            self._max,
            self._dropped_unreported,
            self._dropped_total,
        )
        self._dropped_unreported = 0
        self._last_drop_warning = now

    def _delete(self, slot: _Slot) -> None:
        try:
            (self._dir / slot.name).unlink()
        except FileNotFoundError:
            return
        fsync_dir(self._dir)

    def _move_aside(self, path: Path) -> None:
        try:
            ensure_dir(self._corrupt_dir)
            target = self._corrupt_dir / path.name
            if target.exists():
                target = self._corrupt_dir / f"{path.name}.{time.time_ns()}"
            os.replace(path, target)
            fsync_dir(self._dir)
            self._trim_corrupt()
        except OSError as exc:
            logger.error("Outbox: cannot move {} aside ({}); deleting it", path, exc)
            with contextlib.suppress(OSError):
                path.unlink()

    def _trim_corrupt(self) -> None:
        files = sorted(self._corrupt_dir.iterdir(), key=lambda item: item.stat().st_mtime)
        for old in files[: max(0, len(files) - MAX_CORRUPT_FILES)]:
            with contextlib.suppress(OSError):
                old.unlink()
