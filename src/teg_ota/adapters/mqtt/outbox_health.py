"""Whether the outbox can persist, what to tell the operator when it cannot, and when to retry.

A full or read-only disk must not lose reports nor flood the log: the outbox keeps what it
cannot write in memory (:mod:`teg_ota.adapters.mqtt.outbox`), and this module makes that
visible exactly twice: one error when persisting stops working (with the path, the reason
and what to do about it) and one info line when it works again. In between,
:attr:`Persistence.reason` says why (``teg-ota doctor`` and status can show it), and
:meth:`Persistence.retry_due` paces the cheap retries made while nothing is being appended.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from pathlib import Path

from loguru import logger

RETRY_INTERVAL_S = 5.0
"""At most one retry of persisting per this many seconds when no append triggers one."""


def describe(exc: OSError) -> str:
    """A short reason for ``exc``: its message and the path it names, if any."""
    text = exc.strerror or str(exc) or type(exc).__name__
    return f"{text} ({exc.filename})" if exc.filename else text


def first_file_in_the_way(directory: Path) -> Path | None:
    """The deepest existing component of ``directory`` (itself included) that is not a
    directory: what makes ``mkdir`` fail with "File exists" / "Not a directory"."""
    for candidate in (directory, *directory.parents):
        try:
            if candidate.exists() or candidate.is_symlink():
                return None if candidate.is_dir() else candidate
        except OSError:
            return None
    return None


def nearest_existing(directory: Path) -> Path:
    for candidate in (directory, *directory.parents):
        if candidate.exists():
            return candidate
    return directory


def fix_for(directory: Path, exc: OSError) -> str:
    """What the operator can do so that ``directory`` holds the outbox again."""
    in_the_way = first_file_in_the_way(directory)
    if in_the_way is not None:
        return f"remove the file {in_the_way} (teg-ota needs a directory there)"
    code = exc.errno
    if isinstance(exc, IsADirectoryError) or code == errno.EISDIR:
        return f"remove the directory {exc.filename or directory}"
    if code in (errno.ENOSPC, errno.EDQUOT):
        return f"free space on the file system holding {directory}"
    if code == errno.EROFS:
        return f"remount the file system holding {directory} read-write"
    if code in (errno.EACCES, errno.EPERM):
        return f"make {nearest_existing(directory)} writable by the teg-ota user"
    return f"check {directory} and its file system"


class Persistence:
    """The outbox's persistence health: ``None`` while durable, else why not.

    Not thread-safe on its own: the outbox calls it under its lock. ``monotonic`` paces the
    retries (tests pass their own).
    """

    def __init__(self, directory: Path, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._directory = directory
        self._monotonic = monotonic
        self._reason: str | None = None
        self._last_retry = float("-inf")

    @property
    def reason(self) -> str | None:
        return self._reason

    def failed(self, exc: OSError, capacity: int, *, opening: bool = False) -> None:
        """A write (or, with ``opening``, opening the directory) failed: the first failure
        since persisting last worked is logged as an error; later ones only update the
        reason."""
        reason = describe(exc)
        first = self._reason is None
        self._reason = reason
        self._last_retry = self._monotonic()
        if not first:
            logger.debug("Outbox still cannot persist: {}: {}", self._directory, reason)
            return
        what = "cannot use its directory" if opening else "cannot persist"
        logger.error(
            "Outbox {}: {}: {}; {}. Keeping up to {} messages in memory until it can "
            "(they are lost if teg-ota stops first)",
            what,
            self._directory,
            reason,
            fix_for(self._directory, exc),
            capacity,
        )

    def failed_for_good(self, reason: str) -> None:
        """Persisting cannot resume in this process: logged once as an error."""
        if self._reason != reason:
            logger.error("Outbox {}: {}", self._directory, reason)
        self._reason = reason

    def recovered(self, moved: int) -> None:
        """Persisting works again; ``moved`` messages went from memory to disk."""
        if self._reason is None:
            return
        self._reason = None
        logger.info(
            "Outbox {} persists again ({} message(s) kept in memory meanwhile are now on disk)",
            self._directory,
            moved,
        )

    def retry_due(self) -> bool:
        """Whether a retry is due now (at most one per :data:`RETRY_INTERVAL_S`); a ``True``
        answer counts as that retry."""
        now = self._monotonic()
        if now - self._last_retry < RETRY_INTERVAL_S:
            return False
        self._last_retry = now
        return True
