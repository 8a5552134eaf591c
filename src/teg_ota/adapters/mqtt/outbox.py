"""A bounded, ordered FIFO of MQTT messages waiting for the broker's PUBACK: durable while
the disk allows it, in memory while it does not.

Layout under the outbox directory (``$GATEWAY_DATA_PATH/outbox/``), handled by
:mod:`teg_ota.adapters.mqtt.outbox_files`:

* one file per message, named and encoded as :mod:`teg_ota.adapters.mqtt.outbox_format`
  says (sorting the names sorts the messages);
* ``corrupt/``: entry files that could not be read back, stray files and directories that
  carry an entry's name, moved aside with a warning so the evidence is kept; at most
  :data:`MAX_CORRUPT_FILES` are kept.

Durable (the normal case): every entry is written with ``write_atomic`` (temporary file,
fsync, rename, fsync of the directory) before :meth:`DurableOutbox.append` returns, and
deleted only by :meth:`DurableOutbox.remove`, which the sender calls after the PUBACK. So a
crash at any moment loses no message whose ``append`` returned, and re-sends at most the
message that was in flight (at-least-once). Temporary files of an ``append`` interrupted by
a crash never were acknowledged: they are removed when the outbox is opened.

Degraded (a full, read-only or otherwise unwritable disk, a file where the directory should
be): a report is never lost to the disk alone. Nothing here raises for file-system trouble;
an entry that cannot be written is kept **in memory**, behind the durable ones, and every
later entry joins it there, so the order stays strict. ``peek``/``remove``/``entries`` and
``len`` cover both kinds: the sender delivers memory entries exactly like durable ones.
Every later ``append`` (and ``peek``, at most every ``outbox_health.RETRY_INTERVAL_S``)
first tries to write the memory entries to disk, in order, up to :data:`WRITES_PER_CALL` at
a time; once they all are, new entries are durable again. One error is logged when
persisting stops working and one info line when it works again (outbox_health.py);
:attr:`degraded` and :attr:`in_memory` say how things stand. **The price: memory entries
are lost if the process stops or the power goes before they are delivered or written**,
which is all one can do when the disk cannot hold them. A durable entry delivered while its
file cannot be deleted is forgotten at once (its deletion is retried later; after a restart
before that it is delivered a second time, at-least-once).

Bound: at most ``max_messages`` entries, durable and in memory together. Appending to a
full outbox drops the oldest telemetry entry (the new one included); OTA state entries are
dropped (oldest first) only when nothing else is left. Drops are logged as warnings, at most
one line per :data:`DROP_WARNING_INTERVAL_S`, with the number dropped since the previous line
(outbox_bound.py).

All methods are thread-safe (one lock). One process owns a directory.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

from loguru import logger

from teg_ota.adapters.mqtt.outbox_bound import DROP_WARNING_INTERVAL_S, DropReport, victim_index
from teg_ota.adapters.mqtt.outbox_files import (
    CORRUPT_DIR_NAME,
    MAX_CORRUPT_FILES,
    OutboxFiles,
    Slot,
)
from teg_ota.adapters.mqtt.outbox_format import (
    MAX_ENTRY_BYTES,
    CorruptEntry,
    decode_entry,
    encode_entry,
)
from teg_ota.adapters.mqtt.outbox_health import Persistence

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
DEFAULT_MAX_MESSAGES = 10000
WRITES_PER_CALL = 32
"""At most this many memory entries are written per call when the disk is back: a backlog
of thousands is caught up over several calls instead of blocking one (and the link's loop)
for minutes of fsyncs on an SD card. The sender delivers the rest from memory meanwhile."""


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    seq: int
    topic: str
    payload: bytes
    ota_state: bool


class DurableOutbox:
    """FIFO of ``(topic, payload)``; see the module docstring for the guarantees.

    ``directory`` is created if missing. Only a programming error raises
    (``max_messages < 1``, an empty topic): a directory that cannot be created or listed,
    or an entry that cannot be written, makes the outbox keep entries in memory instead.
    """

    def __init__(self, directory: Path, max_messages: int = DEFAULT_MAX_MESSAGES) -> None:
        if max_messages < 1:
            raise ValueError("max_messages must be at least 1")
        self._dir = Path(directory)
        self._files = OutboxFiles(self._dir)
        self._health = Persistence(self._dir)
        self._max = max_messages
        self._lock = threading.Lock()
        self._slots: deque[Slot] = deque()
        """Durable entries, in order; all of them before every memory entry."""
        self._memory: deque[OutboxEntry] = deque()
        """Entries only in memory, in order, after the durable ones."""
        self._undeleted: deque[Slot] = deque(maxlen=max_messages)
        """Delivered entries whose file could not be deleted yet (retried)."""
        self._opened = False
        self._cannot_open_for_good = False
        self._moved_to_disk = 0
        self._next_seq = 1
        self._drops = DropReport(self._dir, max_messages)
        self._open()

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
            return self._drops.total

    @property
    def degraded(self) -> str | None:
        """``None`` while entries are persisted; else why the last attempt failed (entries
        are then kept in memory, see the module docstring)."""
        with self._lock:
            return self._health.reason

    @property
    def in_memory(self) -> int:
        """How many pending entries live only in memory (lost if the process stops)."""
        with self._lock:
            return len(self._memory)

    def __len__(self) -> int:
        with self._lock:
            return len(self._slots) + len(self._memory)

    def entries(self) -> list[OutboxEntry]:
        """Every pending entry in order (corrupt ones are moved aside and skipped)."""
        with self._lock:
            result: list[OutboxEntry] = []
            for slot in list(self._slots):
                entry = self._read(slot)
                if entry is not None:
                    result.append(entry)
            result.extend(self._memory)
            return result

    def peek(self) -> OutboxEntry | None:
        """The oldest pending entry, or ``None`` when empty. Corrupt heads are moved aside.
        While degraded, tries (rate-limited) to move memory entries to disk first."""
        with self._lock:
            if (self._health.reason is not None or self._memory) and self._health.retry_due():
                self._persist_memory()
            while self._slots:
                entry = self._read(self._slots[0])
                if entry is not None:
                    return entry
            return self._memory[0] if self._memory else None

    # -- changes ----------------------------------------------------------------------------------
    def append(self, topic: str, payload: bytes, *, ota_state: bool = False) -> int:
        """Queue a message at the tail; returns its sequence number. Durable when it
        returns unless :attr:`degraded` (then in memory, behind the other memory entries)."""
        if not topic:
            raise ValueError("empty topic")
        data = bytes(payload)
        with self._lock:
            entry = OutboxEntry(self._next_seq, topic, data, ota_state)
            self._next_seq += 1
            self._memory.append(entry)
            # Written (or kept) first, so a failed write drops nothing; the new entry is
            # itself a candidate (a new telemetry message goes before an old OTA state).
            self._persist_memory(fresh=entry.seq)
            self._drops.dropped(self._trim_to_bound())
            return entry.seq

    def remove(self, seq: int) -> None:
        """Forget a delivered entry (no-op if it is already gone). Never raises: a file
        that cannot be deleted now is deleted later."""
        with self._lock:
            for index, slot in enumerate(self._slots):
                if slot.seq == seq:
                    del self._slots[index]
                    self._delete(slot)
                    return
            for index, entry in enumerate(self._memory):
                if entry.seq == seq:
                    del self._memory[index]
                    return

    # -- internals (lock held) --------------------------------------------------------------------
    def _open(self) -> bool:
        """Scan the directory (at start-up, or later when it could not be opened then)."""
        try:
            scan = self._files.scan()
        except OSError as exc:
            self._health.failed(exc, self._max, opening=True)
            return False
        if scan.slots and (self._memory or scan.slots[0].seq < self._next_seq):
            # Found only now (the directory was unusable at start-up): older than the memory
            # entries but numbered independently of them; merging could break the order.
            self._cannot_open_for_good = True
            self._health.failed_for_good(
                f"{len(scan.slots)} message(s) from before appeared; restart teg-ota to "
                "deliver them (new messages stay in memory until then)"
            )
            return False
        self._opened = True
        last = scan.slots[-1].seq if scan.slots else 0
        self._next_seq = max(self._next_seq, last + 1, scan.taken_seqs + 1)
        self._slots = deque(scan.slots)
        if scan.slots:
            logger.info("Outbox {}: {} message(s) pending from before", self._dir, len(scan.slots))
        self._drops.dropped(self._trim_to_bound())
        return True

    def _persist_memory(self, fresh: int | None = None) -> None:
        """Write memory entries to disk in order, stopping at the first failure. ``fresh``:
        the sequence of the entry being appended (not one kept in memory from before)."""
        if not self._opened and (self._cannot_open_for_good or not self._open()):
            return
        self._retry_deletes()
        wrote = False
        for _ in range(min(len(self._memory), WRITES_PER_CALL)):
            entry = self._memory[0]
            slot = Slot(entry.seq, entry.ota_state)
            try:
                self._files.write(slot, encode_entry(entry.topic, entry.payload))
            except OSError as exc:
                self._health.failed(exc, self._max)
                return
            self._memory.popleft()
            self._slots.append(slot)
            wrote = True
            if entry.seq != fresh:
                self._moved_to_disk += 1
        if not wrote or self._memory or self._health.reason is None:
            return  # recovered only once a write worked and nothing is left in memory
        self._health.recovered(self._moved_to_disk)
        self._moved_to_disk = 0

    def _read(self, slot: Slot) -> OutboxEntry | None:
        """The entry of ``slot``; on failure the slot is forgotten (the file moved aside)."""
        read = self._files.read(slot)
        if read is None:
            self._slots.remove(slot)
            return None
        topic, payload = read
        return OutboxEntry(slot.seq, topic, payload, slot.ota_state)

    def _delete(self, slot: Slot) -> None:
        try:
            self._files.delete(slot)
        except OSError as exc:
            self._undeleted.append(slot)
            self._health.failed(exc, self._max)

    def _retry_deletes(self) -> None:
        while self._undeleted:
            try:
                self._files.delete(self._undeleted[0])
            except OSError:
                return
            self._undeleted.popleft()

    def _trim_to_bound(self) -> int:
        dropped = 0
        while len(self._slots) + len(self._memory) > self._max:
            kinds = chain((s.ota_state for s in self._slots), (e.ota_state for e in self._memory))
            index = victim_index(kinds)
            if index < len(self._slots):
                victim = self._slots[index]
                del self._slots[index]
                self._delete(victim)
            else:
                del self._memory[index - len(self._slots)]
            dropped += 1
        return dropped
