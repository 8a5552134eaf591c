"""One gateway per data directory, so a second runner (or a CLI update while the runner
works) can never swap containers at the same time as the first.

Two locks, both released by the kernel when the holder dies (a lock can never go stale):

* an abstract-namespace Unix socket named after the data directory's real path: it needs
  no file, so it holds when the data directory is read-only, full, or has something else
  at the lock file's path;
* an exclusive ``flock`` on ``<data>/teg-ota.lock`` holding the holder's pid, for the
  message a second process prints (and for processes in another network namespace, which
  do not share abstract sockets). When the file cannot be used, that is logged with the
  path and the fix, and the socket alone decides: a damaged data directory must never
  keep the controller from being looked after.

Only another teg-ota holding either lock raises :class:`AlreadyLocked`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from loguru import logger

LOCK_NAME = "teg-ota.lock"
_SOCKET_PREFIX = "teg-ota-lock-"


class AlreadyLocked(RuntimeError):
    """Another teg-ota process holds the data directory."""


def socket_name(data_path: Path) -> bytes:
    """The abstract socket name for ``data_path`` (its real path, hashed to fit)."""
    digest = hashlib.sha256(os.fsencode(os.path.realpath(data_path))).hexdigest()[:32]
    return b"\0" + (_SOCKET_PREFIX + digest).encode("ascii")


class ProcessLock:
    def __init__(self, data_path: str | Path) -> None:
        self._dir = Path(data_path)
        self._path = self._dir / LOCK_NAME
        self._fd: int | None = None
        self._socket: socket.socket | None = None
        self.file_problem: str | None = None
        """Why the lock file could not be used (the socket alone held), else ``None``."""

    @property
    def path(self) -> Path:
        return self._path

    def acquire(self, wait: bool = False) -> None:
        self._socket = self._bind_socket(wait)
        try:
            self._fd = self._lock_file(wait)
        except BaseException:
            self._socket.close()
            self._socket = None
            raise

    def _bind_socket(self, wait: bool) -> socket.socket:
        name = socket_name(self._dir)
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            try:
                sock.bind(name)
                return sock
            except OSError as exc:
                sock.close()
                if exc.errno != errno.EADDRINUSE:
                    raise
                if not wait:
                    raise AlreadyLocked(
                        f"another teg-ota process is managing {self._dir}"
                    ) from None
            time.sleep(0.2)  # wait=True: the holder's death frees the name at once

    def _lock_file(self, wait: bool) -> int | None:
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            self._file_unusable(exc)
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise AlreadyLocked(
                f"another teg-ota process (pid {holder}) is managing {self._dir}"
            ) from None
        except OSError as exc:
            os.close(fd)
            self._file_unusable(exc)
            return None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
        except OSError as exc:  # locked but not writable (a full disk): the lock holds
            logger.warning("cannot write the pid into {}: {}", self._path, exc)
        return fd

    def _file_unusable(self, exc: OSError) -> None:
        self.file_problem = f"{self._path}: {exc.strerror or exc}"
        logger.error(
            "cannot use the lock file {} ({}); relying on the lock socket alone. Fix: make "
            "{} writable and remove whatever is at {} if it is not a regular file",
            self._path,
            exc.strerror or exc,
            self._dir,
            self._path,
        )

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> ProcessLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
