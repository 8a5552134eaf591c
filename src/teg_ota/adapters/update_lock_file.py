"""The update lock as an advisory ``flock`` on a file the controller sees (issue 15).

An exclusive ``flock`` on the whole file, never a lock *file* whose existence means
"locked": the kernel releases a flock when its holder dies (crash, SIGKILL, reboot), so the
lock can never go stale, and a file that exists but nobody holds does not block. The file
lives in the controller's data directory (``/root/data/update.lock`` inside the container),
created mode 0644 when missing; ``flock`` needs no write access, so a controller that runs
as another user opens it read-only and locks it all the same. It is opened without following
symbolic links and must be a regular file (O_NONBLOCK: a FIFO planted there cannot hang the
open); anything else is logged and treated as no lock.
"""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path

from loguru import logger

LOCK_FILE_MODE = 0o644


class FlockUpdateLock:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None
        self._broken_logged: str | None = None

    @property
    def where(self) -> str:
        return str(self._path)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        try:
            fd = self._open()
        except OSError as exc:
            self._broken(f"cannot open {self._path}: {exc.strerror or exc}")
            return True
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            self._broken(f"{self._path} is not a regular file")
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError as exc:
            os.close(fd)
            self._broken(f"cannot lock {self._path}: {exc.strerror or exc}")
            return True
        self._fd = fd
        self._broken_logged = None
        return True

    def _open(self) -> int:
        """The lock file, never through a symbolic link: the directory is the controller's,
        and teg-ota runs as root (a link to /etc/nologin would have it created)."""
        flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
        try:
            return os.open(self._path, flags)
        except FileNotFoundError:
            try:
                return os.open(self._path, flags | os.O_CREAT | os.O_EXCL, LOCK_FILE_MODE)
            except FileExistsError:  # created meanwhile (by the controller): use it
                return os.open(self._path, flags)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor releases the flock

    def _broken(self, why: str) -> None:
        if self._broken_logged != why:
            self._broken_logged = why
            logger.error(
                "the controller's update lock is unusable ({}); swapping without it (fix the "
                "path or its directory, or set TEG_UPDATE_LOCK_FILE)",
                why,
            )
