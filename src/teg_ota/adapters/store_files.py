"""The small files behind :class:`~teg_ota.adapters.file_version_store.FileVersionStore`.

A :class:`StoreDir` reads and writes files in one directory: a version alone in a text file
(the seed gateway's format) and JSON objects. Reading never raises: a missing file reads as
``None``, an unusable one as ``None`` plus what is wrong with it (or a warning). Writing
goes through :func:`write_atomic` and raises :class:`VersionStoreError`.

Every version read back or about to be written is normalised with
:func:`teg_ota.domain.model.versions.normalised`, because it ends up in git refs and image
names; a version that may not be written raises :class:`InvalidStoredVersion`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from loguru import logger

from teg_ota.adapters.atomic_file import ensure_dir, fsync_dir, read_text_or_none, write_atomic
from teg_ota.domain.model.errors import InvalidVersion
from teg_ota.domain.model.journal import UpdateJournal
from teg_ota.domain.model.versions import normalised, parse_version
from teg_ota.ports.version_store import VersionStoreError

MAX_VERSION_FILE_BYTES = 4096
"""Far above any valid version (128 characters); bigger files are corrupt, not read whole."""
MAX_JSON_FILE_BYTES = 256 * 1024
CORRUPT_SUFFIX = ".corrupt-"
MISSING = "does not exist"
_MAX_REASON = 200


class InvalidStoredVersion(VersionStoreError, ValueError):
    """A version (or a journal or history naming one) that may not be stored; nothing was
    written.

    A :class:`VersionStoreError` as the port promises, and a ``ValueError`` for callers
    that catch invalid input as such.
    """


def _why_invalid(raw: object) -> str:
    """What :func:`parse_version` says is wrong with ``raw`` (for the error message only)."""
    try:
        parse_version(raw)
    except InvalidVersion as exc:
        return str(exc)
    return "invalid version"


def checked_version(raw: object, what: str) -> str:
    """The normalised version, or :class:`ValueError` naming ``what`` was invalid."""
    value = normalised(raw)
    if value is None:
        raise ValueError(f"{what}: {_why_invalid(raw)}")
    return value


def parse_journal(text: str) -> UpdateJournal:
    """The journal in ``text``, its versions checked. Raises ValueError/TypeError/
    RecursionError (the store then moves it aside; the doctor only reports it)."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    journal = UpdateJournal.from_dict(data)
    checked_version(journal.target, "invalid target")
    if journal.previous is not None:
        checked_version(journal.previous, "invalid previous version")
    return journal


def storable_version(raw: object, what: str) -> str:
    """The normalised version to write, or :class:`InvalidStoredVersion`."""
    value = normalised(raw)
    if value is None:
        raise InvalidStoredVersion(f"{what}: {_why_invalid(raw)}")
    return value


def reason(exc: BaseException) -> str:
    """The error's message, cut short: it may quote untrusted file content."""
    text = str(exc)
    return text if len(text) <= _MAX_REASON else text[:_MAX_REASON] + "..."


def os_reason(exc: OSError) -> str:
    """``No space left on device``, not ``[Errno 28] ...: '<temporary file>'``: the path
    is named by the caller, and the temporary file's name would only confuse."""
    return exc.strerror or reason(exc)


class StoreDir:
    """Files in one directory. Not thread-safe: the store calls it with its lock held."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read_version(self, name: str) -> tuple[str | None, str]:
        """The stored version, or ``None`` and what is wrong with the file."""
        path = self.path / name
        try:
            text = read_text_or_none(path, max_bytes=MAX_VERSION_FILE_BYTES)
        except (OSError, ValueError) as exc:
            return None, f"is unreadable ({reason(exc)})"
        if text is None:
            return None, MISSING
        stripped = text.strip()
        if not stripped:
            return None, "is empty"
        try:
            return checked_version(stripped, "invalid version"), ""
        except ValueError as exc:
            return None, f"is corrupt ({reason(exc)})"

    def read_version_or_warn(self, name: str) -> str | None:
        """The stored version; ``None`` if missing, or (with a warning) unusable."""
        stored, problem = self.read_version(name)
        if stored is None and problem != MISSING:
            logger.warning("Ignoring {}: it {}", self.path / name, problem)
        return stored

    def read_json(self, name: str) -> dict[str, object] | None:
        """The JSON object in the file; ``None`` if missing or (with a warning) unusable."""
        path = self.path / name
        try:
            text = read_text_or_none(path, max_bytes=MAX_JSON_FILE_BYTES)
            if text is None:
                return None
            data = json.loads(text)
        except (OSError, ValueError, RecursionError) as exc:
            logger.warning("Ignoring unreadable {}: {}", path, reason(exc))
            return None
        if not isinstance(data, dict):
            logger.warning("Ignoring corrupt {}: not a JSON object", path)
            return None
        return data

    def write(self, name: str, data: bytes) -> None:
        path = self.path / name
        try:
            ensure_dir(self.path)
            write_atomic(path, data)
        except OSError as exc:
            raise VersionStoreError(f"the gateway cannot write {path}: {os_reason(exc)}") from exc

    def remove(self, name: str) -> None:
        path = self.path / name
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise VersionStoreError(f"the gateway cannot remove {path}: {os_reason(exc)}") from exc
        try:
            fsync_dir(self.path)
        except OSError as exc:
            logger.warning("Could not sync {} after removing {}: {}", self.path, name, reason(exc))

    def move_aside(self, name: str, why: BaseException, what: str) -> None:
        """Keep a corrupt file as ``<name>.corrupt-<unix ts>[-<n>]`` (a warning says so)."""
        path = self.path / name
        stamp = int(time.time())
        target = path.with_name(f"{path.name}{CORRUPT_SUFFIX}{stamp}")
        counter = 1
        while target.exists():
            counter += 1
            target = path.with_name(f"{path.name}{CORRUPT_SUFFIX}{stamp}-{counter}")
        try:
            os.replace(path, target)
            fsync_dir(self.path)
        except OSError as exc:
            logger.warning(
                "Ignoring corrupt {} {} ({}); could not move it aside: {}",
                what,
                path,
                reason(why),
                reason(exc),
            )
            return
        logger.warning("Ignoring corrupt {} {} ({}); kept as {}", what, path, reason(why), target)
