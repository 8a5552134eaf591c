"""VersionStore on plain files in ``$GATEWAY_DATA_PATH``, compatible with the seed gateway.

Files (all written with :func:`write_atomic`):

* ``last_launched_controller_version.txt``: the version string alone (the seed's file).
* ``known_good_controller_version.txt``: same format; the rollback target.
* ``previous_known_good_controller_version.txt``: same format; the known-good version before
  the current one (``teg-ota rollback`` goes back to it after a successful update).
* ``known_good_history.json``: ``{"versions": [newest, ...]}``, the known-good versions,
  newest first, at most :data:`MAX_KNOWN_GOOD_HISTORY`. The two files above are its first
  and second entries (kept for compatibility with the seed and older teg-ota releases).
* ``failed_controller_version.json``: ``{"version": ..., "error": ...}``.
* ``update_journal.json``: :meth:`UpdateJournal.to_dict`.

Reading never crashes the gateway: a missing, empty or corrupt file reads as "unknown"
(the configured default for the last-launched version) plus a warning; a corrupt journal is
moved aside as ``update_journal.json.corrupt-<unix ts>`` so the evidence is kept (a journal
that cannot be read at the moment, an I/O error, is left where it is). Every version read
back is validated with :func:`parse_version`, because it ends up in git refs and image
names. Writes raise :class:`VersionStoreError`; an invalid version to write raises its
subclass :class:`InvalidStoredVersion` (also a ``ValueError``) before anything is written.

Known-good history (:meth:`FileVersionStore.set_known_good`): storing the newest entry
again changes nothing; storing the second entry (going back to the previous known-good, which
is what a rollback does) drops the newest, so a second rollback goes further back instead of
forward again (v1.0 -> v1.1 -> v1.2, rollback -> v1.1, rollback -> v1.0); any other version
is pushed on top (an older occurrence of it removed). ``known_good_controller_version.txt`` is
written first, then the previous file, then the history: the history is what the known-good
file says, so a crash between the writes, or an older release that wrote only the text files,
is caught up on the next read by applying the same rule to the history. A missing (or
unusable) history is seeded from the two text files; the seeded history is written before
the first change.

One lock serialises all calls within a process. Only one process (the runner) is expected
to write; others may read.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from loguru import logger

from teg_ota.adapters.atomic_file import (
    ensure_dir,
    fsync_dir,
    read_text_or_none,
    remove_stale_temp_files,
    write_atomic,
)
from teg_ota.domain.model.errors import InvalidVersion
from teg_ota.domain.model.journal import FailedVersion, UpdateJournal
from teg_ota.domain.model.versions import parse_version
from teg_ota.ports.version_store import VersionStoreError

LAST_LAUNCHED_FILE = "last_launched_controller_version.txt"
KNOWN_GOOD_FILE = "known_good_controller_version.txt"
PREVIOUS_KNOWN_GOOD_FILE = "previous_known_good_controller_version.txt"
KNOWN_GOOD_HISTORY_FILE = "known_good_history.json"
MAX_KNOWN_GOOD_HISTORY = 10
"""Known-good versions remembered (``teg-ota rollback`` can go back this many minus one)."""
FAILED_FILE = "failed_controller_version.json"
JOURNAL_FILE = "update_journal.json"
CORRUPT_SUFFIX = ".corrupt-"

MAX_VERSION_FILE_BYTES = 4096
"""Far above any valid version (128 characters); bigger files are corrupt, not read whole."""
MAX_JSON_FILE_BYTES = 256 * 1024

STALE_TEMP_SECONDS = 120.0
"""Leftover temporary files older than this are removed at construction. Younger ones may
belong to a write in progress in another process, so they are left alone."""

_MISSING = "does not exist"
_MAX_REASON = 200


class InvalidStoredVersion(VersionStoreError, ValueError):
    """A version (or a journal naming one) that may not be stored; nothing was written.

    A :class:`VersionStoreError` as the port promises, and a ``ValueError`` for callers
    that catch invalid input as such.
    """


def _checked_version(raw: str, what: str) -> str:
    """The normalised version, or :class:`ValueError` naming ``what`` was invalid."""
    try:
        return parse_version(raw).value
    except InvalidVersion as exc:
        raise ValueError(f"{what}: {exc}") from exc


def _advance_history(history: list[str], version: str) -> list[str]:
    """``history`` (newest first) after ``version`` became the known-good version.

    The newest again: unchanged. The second (back to the previous known-good: a rollback):
    the newest is dropped. Anything else: pushed on top, an older occurrence removed; the
    result is cut to :data:`MAX_KNOWN_GOOD_HISTORY`.
    """
    if history and history[0] == version:
        return list(history)
    if len(history) > 1 and history[1] == version:
        return history[1:]
    rest = [entry for entry in history if entry != version]
    return [version, *rest][:MAX_KNOWN_GOOD_HISTORY]


def _storable_version(raw: str, what: str) -> str:
    """The normalised version to write, or :class:`InvalidStoredVersion`."""
    try:
        return parse_version(raw).value
    except InvalidVersion as exc:
        raise InvalidStoredVersion(f"{what}: {exc}") from exc


class FileVersionStore:
    """The :class:`~teg_ota.ports.version_store.VersionStore` port on files in ``data_path``."""

    def __init__(
        self,
        data_path: str | Path,
        default_version: str | None = None,
        *,
        stale_temp_after: float = STALE_TEMP_SECONDS,
    ) -> None:
        self._dir = Path(data_path)
        self._default = (
            None
            if default_version is None
            else _checked_version(
                default_version,
                "invalid default controller version (TEG_DEFAULT_CONTROLLER_VERSION)",
            )
        )
        self._lock = threading.Lock()
        self._last_launched: str | None = None
        self._last_launched_loaded = False
        for name in (
            LAST_LAUNCHED_FILE,
            KNOWN_GOOD_FILE,
            PREVIOUS_KNOWN_GOOD_FILE,
            KNOWN_GOOD_HISTORY_FILE,
            FAILED_FILE,
            JOURNAL_FILE,
        ):
            for stale in remove_stale_temp_files(self._dir / name, older_than=stale_temp_after):
                logger.info("Removed leftover temporary file {}", stale)

    @property
    def data_path(self) -> Path:
        return self._dir

    # -- last launched / known good -------------------------------------------------------

    def last_launched(self) -> str | None:
        with self._lock:
            if not self._last_launched_loaded:
                stored, problem = self._read_version(LAST_LAUNCHED_FILE)
                if stored is None:
                    fallback = (
                        f"falling back to the default controller version {self._default}"
                        if self._default is not None
                        else "no default controller version is configured"
                    )
                    logger.warning("{} {}; {}", self._dir / LAST_LAUNCHED_FILE, problem, fallback)
                self._last_launched = stored if stored is not None else self._default
                self._last_launched_loaded = True
            return self._last_launched

    def set_last_launched(self, version: str) -> None:
        value = _storable_version(version, "refusing to store the last launched version")
        with self._lock:
            self._write(LAST_LAUNCHED_FILE, value.encode("utf-8"))
            self._last_launched = value
            self._last_launched_loaded = True

    def known_good(self) -> str | None:
        with self._lock:
            history, _ = self._known_good_history()
            return history[0] if history else None

    def set_known_good(self, version: str) -> None:
        """Record ``version`` as known good, by the history rule of the module docstring:
        the version it replaces becomes :meth:`previous_known_good`, except when it IS the
        previous known-good (a rollback), which then goes back one step in the history."""
        value = _storable_version(version, "refusing to store the known-good version")
        with self._lock:
            history, stored = self._known_good_history()
            if not stored and history:
                # Migration: keep what the text files said durably before changing them.
                self._write_history(history)
            new = _advance_history(history, value)
            self._write(KNOWN_GOOD_FILE, value.encode("utf-8"))
            if len(new) > 1:
                self._write(PREVIOUS_KNOWN_GOOD_FILE, new[1].encode("utf-8"))
            else:
                self._remove(PREVIOUS_KNOWN_GOOD_FILE)
            self._write_history(new)

    def previous_known_good(self) -> str | None:
        """The known-good version before the current one (``None`` if there was none)."""
        with self._lock:
            history, _ = self._known_good_history()
            return history[1] if len(history) > 1 else None

    # -- failed version -------------------------------------------------------------------

    def failed(self) -> FailedVersion | None:
        with self._lock:
            data = self._read_json(FAILED_FILE)
            if data is None:
                return None
            version, error = data.get("version"), data.get("error")
            try:
                if not isinstance(version, str) or not isinstance(error, str):
                    raise ValueError("'version' and 'error' must be strings")
                return FailedVersion(_checked_version(version, "invalid version"), error)
            except ValueError as exc:
                logger.warning("Ignoring corrupt {}: {}", self._dir / FAILED_FILE, _reason(exc))
                return None

    def set_failed(self, failed: FailedVersion | None) -> None:
        if failed is None:
            with self._lock:
                self._remove(FAILED_FILE)
            return
        version = _storable_version(failed.version, "refusing to store the failed version")
        payload = json.dumps({"version": version, "error": failed.error}, ensure_ascii=False)
        with self._lock:
            self._write(FAILED_FILE, payload.encode("utf-8"))

    # -- journal --------------------------------------------------------------------------

    def journal(self) -> UpdateJournal | None:
        with self._lock:
            path = self._dir / JOURNAL_FILE
            try:
                text = read_text_or_none(path, max_bytes=MAX_JSON_FILE_BYTES)
            except OSError as exc:
                # Not evidence of corruption (an I/O error, a busy or odd file): the next
                # read may well succeed, so the file stays where it is.
                logger.warning("Cannot read the journal {} now: {}", path, _reason(exc))
                return None
            except ValueError as exc:  # not UTF-8, or too large: corrupt
                self._move_aside(path, exc)
                return None
            if text is None:
                return None
            try:
                data = json.loads(text)
                if not isinstance(data, dict):
                    raise ValueError("not a JSON object")
                journal = UpdateJournal.from_dict(data)
                _checked_version(journal.target, "invalid target")
                if journal.previous is not None:
                    _checked_version(journal.previous, "invalid previous version")
            except (ValueError, TypeError, RecursionError) as exc:
                self._move_aside(path, exc)
                return None
            return journal

    def write_journal(self, journal: UpdateJournal) -> None:
        _storable_version(journal.target, "refusing to store a journal with target")
        if journal.previous is not None:
            _storable_version(journal.previous, "refusing to store a journal with previous")
        payload = json.dumps(journal.to_dict(), ensure_ascii=False, allow_nan=False)
        with self._lock:
            self._write(JOURNAL_FILE, payload.encode("utf-8"))

    def clear_journal(self) -> None:
        with self._lock:
            self._remove(JOURNAL_FILE)

    # -- helpers (called with the lock held) ----------------------------------------------

    def _known_good_history(self) -> tuple[list[str], bool]:
        """The known-good history, newest first, and whether it came from its file.

        Without a usable history file it is seeded from the known-good and previous text
        files. A known-good text file that disagrees with the history's newest entry was
        written after it (a crash between the writes of :meth:`set_known_good`, or an older
        release): the history catches up by the same rule.
        """
        current = self._read_version_or_warn(KNOWN_GOOD_FILE)
        stored = self._read_history_file()
        if stored is None:
            previous = self._read_version_or_warn(PREVIOUS_KNOWN_GOOD_FILE)
            seeded = [current] if current is not None else []
            if previous is not None and previous not in seeded:
                seeded.append(previous)
            return seeded, False
        if current is not None and (not stored or stored[0] != current):
            return _advance_history(stored, current), True
        return stored, True

    def _read_history_file(self) -> list[str] | None:
        """The versions in the history file; ``None`` if it is missing or (warned) unusable."""
        path = self._dir / KNOWN_GOOD_HISTORY_FILE
        data = self._read_json(KNOWN_GOOD_HISTORY_FILE)
        if data is None:
            return None
        versions = data.get("versions")
        try:
            if not isinstance(versions, list) or not all(isinstance(v, str) for v in versions):
                raise ValueError("'versions' must be a list of strings")
            history: list[str] = []
            for raw in versions:
                value = _checked_version(raw, "invalid version")
                if value not in history:
                    history.append(value)
        except ValueError as exc:
            logger.warning(
                "Ignoring corrupt {}: {}; using {} and {}",
                path,
                _reason(exc),
                KNOWN_GOOD_FILE,
                PREVIOUS_KNOWN_GOOD_FILE,
            )
            return None
        return history[:MAX_KNOWN_GOOD_HISTORY]

    def _write_history(self, history: list[str]) -> None:
        payload = json.dumps({"versions": history[:MAX_KNOWN_GOOD_HISTORY]}, ensure_ascii=False)
        self._write(KNOWN_GOOD_HISTORY_FILE, payload.encode("utf-8"))

    def _read_version_or_warn(self, name: str) -> str | None:
        """The stored version; ``None`` if missing, or (with a warning) unusable."""
        stored, problem = self._read_version(name)
        if stored is None and problem != _MISSING:
            logger.warning("Ignoring {}: it {}", self._dir / name, problem)
        return stored

    def _read_version(self, name: str) -> tuple[str | None, str]:
        """The stored version, or ``None`` and what is wrong with the file."""
        path = self._dir / name
        try:
            text = read_text_or_none(path, max_bytes=MAX_VERSION_FILE_BYTES)
        except (OSError, ValueError) as exc:
            return None, f"is unreadable ({_reason(exc)})"
        if text is None:
            return None, _MISSING
        stripped = text.strip()
        if not stripped:
            return None, "is empty"
        try:
            return _checked_version(stripped, "invalid version"), ""
        except ValueError as exc:
            return None, f"is corrupt ({_reason(exc)})"

    def _read_json(self, name: str) -> dict[str, object] | None:
        path = self._dir / name
        try:
            text = read_text_or_none(path, max_bytes=MAX_JSON_FILE_BYTES)
            if text is None:
                return None
            data = json.loads(text)
        except (OSError, ValueError, RecursionError) as exc:
            logger.warning("Ignoring unreadable {}: {}", path, _reason(exc))
            return None
        if not isinstance(data, dict):
            logger.warning("Ignoring corrupt {}: not a JSON object", path)
            return None
        return data

    def _write(self, name: str, data: bytes) -> None:
        path = self._dir / name
        try:
            ensure_dir(self._dir)
            write_atomic(path, data)
        except OSError as exc:
            raise VersionStoreError(f"could not write {path}: {_reason(exc)}") from exc

    def _remove(self, name: str) -> None:
        path = self._dir / name
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise VersionStoreError(f"could not remove {path}: {_reason(exc)}") from exc
        try:
            fsync_dir(self._dir)
        except OSError as exc:
            logger.warning("Could not sync {} after removing {}: {}", self._dir, name, _reason(exc))

    def _move_aside(self, path: Path, reason: BaseException) -> None:
        stamp = int(time.time())
        target = path.with_name(f"{path.name}{CORRUPT_SUFFIX}{stamp}")
        counter = 1
        while target.exists():
            counter += 1
            target = path.with_name(f"{path.name}{CORRUPT_SUFFIX}{stamp}-{counter}")
        try:
            os.replace(path, target)
            fsync_dir(self._dir)
        except OSError as exc:
            logger.warning(
                "Ignoring corrupt journal {} ({}); could not move it aside: {}",
                path,
                _reason(reason),
                _reason(exc),
            )
            return
        logger.warning(
            "Ignoring corrupt journal {} ({}); kept as {}", path, _reason(reason), target
        )


def _reason(exc: BaseException) -> str:
    """The error's message, cut short: it may quote untrusted file content."""
    text = str(exc)
    return text if len(text) <= _MAX_REASON else text[:_MAX_REASON] + "..."
