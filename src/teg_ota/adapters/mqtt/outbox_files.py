"""The outbox directory's file operations: open (scan), write, read, delete, move aside.

Kept apart from :mod:`teg_ota.adapters.mqtt.outbox`, which decides *when* an entry lives on
disk or in memory; this module only knows how one entry file is handled and what opening
the directory finds there. Nothing here holds a lock: the outbox calls it under its own.

Opening (:meth:`OutboxFiles.scan`) cleans up after faults without losing evidence:

* temporary files of an ``append`` interrupted by a crash are removed (that ``append``
  never returned: nothing acknowledged is lost);
* files that are not entries are moved to ``corrupt/`` with a warning;
* a *directory* whose name is an entry name (left by a fault or a person) is moved to
  ``corrupt/`` too, or, when even that fails, skipped and reported in
  :attr:`Scan.taken_seqs`, so the outbox never numbers a new entry onto that name.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from loguru import logger

from teg_ota.adapters.atomic_file import TEMP_INFIX, ensure_dir, fsync_dir, write_atomic
from teg_ota.adapters.mqtt.outbox_format import (
    MAX_ENTRY_BYTES,
    CorruptEntry,
    decode_entry,
    entry_file_name,
    parse_entry_file_name,
)

CORRUPT_DIR_NAME = "corrupt"
MAX_CORRUPT_FILES = 100


@dataclass(frozen=True, slots=True)
class Slot:
    """A durable entry: its file is ``<outbox>/<entry_file_name(seq, ota_state)>``."""

    seq: int
    ota_state: bool

    @property
    def name(self) -> str:
        return entry_file_name(self.seq, self.ota_state)


@dataclass(slots=True)
class Scan:
    """What opening the directory found: the entries in order, and the highest sequence
    number whose name is held by something that could not be moved aside (0: none)."""

    slots: list[Slot] = field(default_factory=list)
    taken_seqs: int = 0


class OutboxFiles:
    """The entry files of one outbox directory (the outbox's lock is held by callers)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.corrupt_dir = directory / CORRUPT_DIR_NAME
        self._prefix = os.path.join(directory, "")

    def path(self, slot: Slot) -> Path:
        return self.directory / slot.name

    def _file(self, slot: Slot) -> str:
        """``slot``'s file as a plain string: read and delete run once per message of a
        drain, where building a :class:`Path` each time is a measurable share of the CPU."""
        return self._prefix + slot.name

    # -- opening ----------------------------------------------------------------------------------
    def scan(self) -> Scan:
        """Create the directory if needed and list its entries (cleaning up as the module
        docstring says). Raises :class:`OSError` if it cannot be created or listed."""
        ensure_dir(self.directory)
        found = Scan()
        for path in list(self.directory.iterdir()):
            name = path.name
            parsed = parse_entry_file_name(name)
            if path.is_dir():
                if parsed is not None and not self._move_dir_aside(path):
                    found.taken_seqs = max(found.taken_seqs, parsed[0])
                continue
            if name.startswith(".") and TEMP_INFIX in name:
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            if parsed is None:
                logger.warning("Outbox: unexpected file {} moved aside", path)
                self.move_aside(path)
                continue
            found.slots.append(Slot(*parsed))
        found.slots.sort(key=lambda slot: slot.seq)
        return found

    def _move_dir_aside(self, path: Path) -> bool:
        """Move a directory named like an entry to ``corrupt/``; ``False`` if it stays."""
        try:
            self._replace_into_corrupt(path)
        except OSError as exc:
            logger.error(
                "Outbox: {} is a directory with an entry's name and cannot be moved aside "
                "({}); skipped, new entries are numbered after it",
                path,
                exc,
            )
            return False
        logger.warning("Outbox: directory {} had an entry's name; moved aside", path)
        return True

    # -- one entry --------------------------------------------------------------------------------
    def write(self, slot: Slot, data: bytes) -> None:
        """Write ``slot``'s file durably. A directory in the way is moved aside first; an
        outbox directory removed meanwhile is created again. Raises :class:`OSError`."""
        path = self.path(slot)
        if path.is_dir() and not self._move_dir_aside(path):
            raise IsADirectoryError(errno.EISDIR, "a directory is in the way", str(path))
        try:
            write_atomic(path, data)
        except FileNotFoundError:
            if self.directory.is_dir():
                raise
            ensure_dir(self.directory)
            write_atomic(path, data)

    def read(self, slot: Slot) -> tuple[str, bytes] | None:
        """``(topic, payload)`` of ``slot``; ``None`` when the file vanished or cannot be
        trusted (then it is moved aside with a warning; the caller forgets the slot)."""
        path = self._file(slot)
        try:
            with open(path, "rb") as handle:  # the size of the open file: no second lookup
                size = os.fstat(handle.fileno()).st_size
                if size > MAX_ENTRY_BYTES:
                    raise CorruptEntry(f"{size} bytes is too large")
                data = handle.read()
            return decode_entry(data)
        except FileNotFoundError:
            logger.warning("Outbox entry {} vanished", path)
            return None
        except (OSError, CorruptEntry) as exc:
            logger.warning("Outbox entry {} is unreadable ({}): moved aside", path, exc)
            self.move_aside(Path(path))
            return None

    def delete(self, slot: Slot) -> None:
        """Delete ``slot``'s file (gone already: fine). Raises :class:`OSError` if it cannot
        be unlinked or the directory cannot be synced."""
        try:
            os.unlink(self._file(slot))
        except FileNotFoundError:
            return
        fsync_dir(self.directory)

    # -- evidence ---------------------------------------------------------------------------------
    def move_aside(self, path: Path) -> None:
        """Move a bad file to ``corrupt/`` (at most :data:`MAX_CORRUPT_FILES` kept); if that
        fails, delete it. Never raises."""
        try:
            self._replace_into_corrupt(path)
        except OSError as exc:
            logger.error("Outbox: cannot move {} aside ({}); deleting it", path, exc)
            with contextlib.suppress(OSError):
                path.unlink()

    def _replace_into_corrupt(self, path: Path) -> None:
        ensure_dir(self.corrupt_dir)
        target = self.corrupt_dir / path.name
        if target.exists():
            target = self.corrupt_dir / f"{path.name}.{time.time_ns()}"
        os.replace(path, target)
        fsync_dir(self.directory)
        self._trim_corrupt()

    def _trim_corrupt(self) -> None:
        with contextlib.suppress(OSError):
            items = sorted(self.corrupt_dir.iterdir(), key=lambda item: item.lstat().st_mtime)
            for old in items[: max(0, len(items) - MAX_CORRUPT_FILES)]:
                with contextlib.suppress(OSError):
                    if old.is_dir() and not old.is_symlink():
                        shutil.rmtree(old)
                    else:
                        old.unlink()
