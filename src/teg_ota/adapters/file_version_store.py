"""VersionStore on plain files in ``$GATEWAY_DATA_PATH``, compatible with the seed gateway.

Files (all written with :func:`~teg_ota.adapters.atomic_file.write_atomic`):

* ``last_launched_controller_version.txt``: the version string alone (the seed's file).
* ``known_good_history.json``, ``known_good_controller_version.txt`` and
  ``previous_known_good_controller_version.txt``: the known-good history and its first two
  entries (:mod:`teg_ota.adapters.known_good_files` has the format, the write order and how
  an older data directory with only the text files is read).
* ``failed_controller_version.json``: ``{"version": ..., "error": ..., "fingerprint": ...}``
  (the fingerprint of the settings it failed under; absent in older files).
* ``last_ota_answer.json``: ``{"state": "UPDATED"|"FAILED", "version": ..., "title": ...}``,
  the last terminal state told to ThingsBoard (the version as assigned, possibly invalid).
* ``update_journal.json``: :meth:`UpdateJournal.to_dict`.
* ``interrupted_attempts.json``: ``{"version": ..., "count": ...}``, how many times in a row
  that version's swap or health gate was interrupted (the loop guard; it outlives the
  journal, which each interrupted attempt's rollback clears).
* ``resolved_versions.json``: what each version named at its first success
  (:mod:`teg_ota.adapters.resolved_files`).

Reading never crashes the gateway: a missing, empty or corrupt file reads as "unknown"
(the configured default for the last-launched version) plus a warning; a corrupt journal is
moved aside as ``update_journal.json.corrupt-<unix ts>`` so the evidence is kept (a journal
that cannot be read at the moment, an I/O error, is left where it is). Every version read
back is validated and normalised (:func:`teg_ota.domain.model.versions.normalised`),
because it ends up in git refs and image names. Writes raise :class:`VersionStoreError`; an
invalid version to write raises its subclass :class:`InvalidStoredVersion` (also a
``ValueError``) before anything is written.

The store only keeps the known-good history; how it changes (the walk-back rule of
``teg-ota rollback``) is :mod:`teg_ota.domain.core.known_good`.

One lock serialises all calls within a process. Only one process (the runner) is expected
to write; others may read.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from loguru import logger

from teg_ota.adapters.atomic_file import read_text_or_none, remove_stale_temp_files
from teg_ota.adapters.known_good_files import (
    KNOWN_GOOD_FILE,
    KNOWN_GOOD_HISTORY_FILE,
    MAX_KNOWN_GOOD_HISTORY,
    PREVIOUS_KNOWN_GOOD_FILE,
    read_history,
    write_history,
)
from teg_ota.adapters.resolved_files import RESOLVED_FILE, read_resolved, write_resolved
from teg_ota.adapters.store_files import (
    CORRUPT_SUFFIX,
    MAX_JSON_FILE_BYTES,
    MAX_VERSION_FILE_BYTES,
    InvalidStoredVersion,
    StoreDir,
    checked_version,
    parse_journal,
    reason,
    storable_version,
)
from teg_ota.domain.model.journal import (
    Answer,
    FailedVersion,
    InterruptedAttempts,
    UpdateJournal,
)
from teg_ota.domain.model.ota_state import OtaState
from teg_ota.ports.version_store import VersionStoreError

__all__ = [
    "CORRUPT_SUFFIX",
    "ANSWER_FILE",
    "FAILED_FILE",
    "INTERRUPTED_FILE",
    "JOURNAL_FILE",
    "KNOWN_GOOD_FILE",
    "KNOWN_GOOD_HISTORY_FILE",
    "LAST_LAUNCHED_FILE",
    "MAX_JSON_FILE_BYTES",
    "MAX_KNOWN_GOOD_HISTORY",
    "MAX_VERSION_FILE_BYTES",
    "PREVIOUS_KNOWN_GOOD_FILE",
    "STALE_TEMP_SECONDS",
    "FileVersionStore",
    "InvalidStoredVersion",
    "VersionStoreError",
]

LAST_LAUNCHED_FILE = "last_launched_controller_version.txt"
FAILED_FILE = "failed_controller_version.json"
ANSWER_FILE = "last_ota_answer.json"
JOURNAL_FILE = "update_journal.json"
INTERRUPTED_FILE = "interrupted_attempts.json"

STALE_TEMP_SECONDS = 120.0
"""Leftover temporary files older than this are removed at construction. Younger ones may
belong to a write in progress in another process, so they are left alone."""


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
        self._files = StoreDir(self._dir)
        self._default = (
            None
            if default_version is None
            else checked_version(
                default_version,
                "invalid default controller version (TEG_DEFAULT_CONTROLLER_VERSION)",
            )
        )
        self._lock = threading.Lock()
        self._last_launched: str | None = None
        self._last_launched_loaded = False
        self._answer_unwritten = False
        self._unwritten_answer: Answer | None = None
        """The last answer, while the disk refuses it (``_answer_unwritten``)."""
        self._interrupted_unwritten = False
        self._unwritten_interrupted: InterruptedAttempts | None = None
        """The last interrupted-attempts count, while the disk refuses it."""
        self._unclearable_journal: UpdateJournal | None = None
        """A finished journal the disk would not let go of."""
        for name in (
            LAST_LAUNCHED_FILE,
            KNOWN_GOOD_FILE,
            PREVIOUS_KNOWN_GOOD_FILE,
            KNOWN_GOOD_HISTORY_FILE,
            FAILED_FILE,
            ANSWER_FILE,
            JOURNAL_FILE,
            RESOLVED_FILE,
            INTERRUPTED_FILE,
        ):
            for stale in remove_stale_temp_files(self._dir / name, older_than=stale_temp_after):
                logger.info("Removed leftover temporary file {}", stale)

    @property
    def data_path(self) -> Path:
        return self._dir

    def default_version(self) -> str | None:
        return self._default

    # -- last launched / known good -------------------------------------------------------

    def last_launched(self) -> str | None:
        with self._lock:
            if not self._last_launched_loaded:
                stored, problem = self._files.read_version(LAST_LAUNCHED_FILE)
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
        value = storable_version(version, "refusing to store the last launched version")
        with self._lock:
            self._files.write(LAST_LAUNCHED_FILE, value.encode("utf-8"))
            self._last_launched = value
            self._last_launched_loaded = True

    def known_good_history(self) -> tuple[str, ...]:
        """The known-good versions, newest first (empty when none passed a health gate; the
        default version is not one)."""
        with self._lock:
            history, _ = read_history(self._files)
            return history

    def set_known_good_history(self, history: Sequence[str]) -> None:
        """Durably replace the history: normalised, duplicates after the first dropped,
        cut to :data:`MAX_KNOWN_GOOD_HISTORY`. Nothing is written if any entry is invalid."""
        what = "refusing to store the known-good history"
        if isinstance(history, str):
            raise InvalidStoredVersion(f"{what}: expected a sequence of versions, not a string")
        values: list[str] = []
        for raw in history:
            value = storable_version(raw, what)
            if value not in values:
                values.append(value)
        with self._lock:
            write_history(self._files, values[:MAX_KNOWN_GOOD_HISTORY])

    # -- what each version named ---------------------------------------------------------

    def recorded_commit(self, version: str) -> str | None:
        with self._lock:
            return read_resolved(self._files).get(version)

    def record_commit(self, version: str, commit: str) -> None:
        with self._lock:
            write_resolved(self._files, version, commit)

    # -- failed version -------------------------------------------------------------------

    def failed(self) -> FailedVersion | None:
        with self._lock:
            data = self._files.read_json(FAILED_FILE)
            if data is None:
                return None
            version, error = data.get("version"), data.get("error")
            try:
                if not isinstance(version, str) or not isinstance(error, str):
                    raise ValueError("'version' and 'error' must be strings")
                fingerprint = data.get("fingerprint")
                if fingerprint is not None and not isinstance(fingerprint, str):
                    raise ValueError("'fingerprint' must be a string")
                return FailedVersion(
                    checked_version(version, "invalid version"), error, fingerprint
                )
            except ValueError as exc:
                logger.warning("Ignoring corrupt {}: {}", self._dir / FAILED_FILE, reason(exc))
                return None

    def set_failed(self, failed: FailedVersion | None) -> None:
        if failed is None:
            with self._lock:
                self._files.remove(FAILED_FILE)
            return
        version = storable_version(failed.version, "refusing to store the failed version")
        record: dict[str, str] = {"version": version, "error": failed.error}
        if failed.fingerprint is not None:
            record["fingerprint"] = failed.fingerprint
        payload = json.dumps(record, ensure_ascii=False)
        with self._lock:
            self._files.write(FAILED_FILE, payload.encode("utf-8"))

    # -- last answer to ThingsBoard --------------------------------------------------------

    def answered(self) -> Answer | None:
        with self._lock:
            if self._answer_unwritten:
                return self._unwritten_answer
            data = self._files.read_json(ANSWER_FILE)
            if data is None:
                return None
            try:
                state, version = OtaState(str(data.get("state"))), data.get("version")
                title = data.get("title")
                if not state.is_terminal or not isinstance(version, str):
                    raise ValueError("'state' must be UPDATED or FAILED, 'version' a string")
                if title is not None and not isinstance(title, str):
                    raise ValueError("'title' must be a string")
                return Answer(state, version, title)
            except ValueError as exc:
                logger.warning("Ignoring corrupt {}: {}", self._dir / ANSWER_FILE, reason(exc))
                return None

    def set_answered(self, answer: Answer | None) -> None:
        with self._lock:
            try:
                if answer is None:
                    self._files.remove(ANSWER_FILE)
                else:
                    # Compared, never used as a version (a rejected one may be invalid).
                    record = {"state": answer.state.value, "version": answer.version}
                    if answer.title is not None:
                        record["title"] = answer.title
                    self._files.write(ANSWER_FILE, json.dumps(record).encode("utf-8"))
            except VersionStoreError:
                # Still true for this process: a re-sent assignment is not answered again
                # while the disk refuses (only a restart can repeat it).
                self._answer_unwritten, self._unwritten_answer = True, answer
                raise
            self._answer_unwritten, self._unwritten_answer = False, None

    # -- interrupted attempts (the loop guard) --------------------------------------------

    def interrupted_attempts(self) -> InterruptedAttempts | None:
        with self._lock:
            if self._interrupted_unwritten:
                return self._unwritten_interrupted
            path = self._dir / INTERRUPTED_FILE
            data = self._files.read_json(INTERRUPTED_FILE)
            if data is None:
                return None
            try:
                record = InterruptedAttempts.from_dict(data)
                return InterruptedAttempts(
                    checked_version(record.version, "invalid version"), record.count
                )
            except ValueError as exc:
                logger.warning("Ignoring corrupt {}: {}", path, reason(exc))
                return None

    def set_interrupted_attempts(self, record: InterruptedAttempts | None) -> None:
        """A count the disk refuses is still the count for this process (and raises)."""
        if record is not None:
            what = "refusing to count the interrupted attempts of"
            record = InterruptedAttempts(storable_version(record.version, what), record.count)
        with self._lock:
            try:
                if record is None:
                    # Forgotten at every success: no disk access when there is nothing (a
                    # read-only disk refuses even the removal of a missing file).
                    if os.path.lexists(self._dir / INTERRUPTED_FILE):
                        self._files.remove(INTERRUPTED_FILE)
                else:
                    payload = json.dumps(record.to_dict(), ensure_ascii=False)
                    self._files.write(INTERRUPTED_FILE, payload.encode("utf-8"))
            except VersionStoreError:
                self._interrupted_unwritten, self._unwritten_interrupted = True, record
                raise
            self._interrupted_unwritten, self._unwritten_interrupted = False, None

    # -- journal --------------------------------------------------------------------------

    def journal(self) -> UpdateJournal | None:
        with self._lock:
            path = self._dir / JOURNAL_FILE
            try:
                text = read_text_or_none(path, max_bytes=MAX_JSON_FILE_BYTES)
            except OSError as exc:
                # Not evidence of corruption (an I/O error, a busy or odd file): the next
                # read may well succeed, so the file stays where it is.
                logger.warning("Cannot read the journal {} now: {}", path, reason(exc))
                return None
            except ValueError as exc:  # not UTF-8, or too large: corrupt
                self._files.move_aside(JOURNAL_FILE, exc, "journal")
                return None
            if text is None:
                return None
            try:
                journal = parse_journal(text)
            except (ValueError, TypeError, RecursionError) as exc:
                self._files.move_aside(JOURNAL_FILE, exc, "journal")
                return None
            # Finished, but the disk refused the clean-up: ended for this process.
            return None if journal == self._unclearable_journal else journal

    def write_journal(self, journal: UpdateJournal) -> None:
        storable_version(journal.target, "refusing to store a journal with target")
        if journal.previous is not None:
            storable_version(journal.previous, "refusing to store a journal with previous")
        payload = json.dumps(journal.to_dict(), ensure_ascii=False, allow_nan=False)
        with self._lock:
            self._files.write(JOURNAL_FILE, payload.encode("utf-8"))
            self._unclearable_journal = None

    def clear_journal(self) -> None:
        """Raises when the file stays; the journal then still reads as cleared in this
        process, so the watchdog does not recover (and report) a finished update again."""
        finished = self.journal()
        with self._lock:
            try:
                self._files.remove(JOURNAL_FILE)
            except VersionStoreError:
                self._unclearable_journal = finished
                raise
            self._unclearable_journal = None
