"""Crash-safe small-file persistence: a reader sees the old content or the new, never a mix.

``write_atomic`` writes to a temporary file in the target's directory, fsyncs it, renames it
over the target (``os.replace`` is atomic on POSIX file systems) and fsyncs the directory so
the rename itself survives a power cut.

A process killed mid-write leaves its temporary file behind. Temporary files are named
``.<target name>.tmp-<random>`` so their owner can recognise and remove them
(:func:`remove_stale_temp_files`) without touching anything else.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import time
from pathlib import Path

FILE_MODE = 0o644
TEMP_INFIX = ".tmp-"


def temp_prefix(path: Path) -> str:
    """The name prefix of ``path``'s temporary files: ``.<name>.tmp-``."""
    return f".{path.name}{TEMP_INFIX}"


def fsync_dir(directory: Path) -> None:
    """Make entries created, renamed or removed in ``directory`` durable. Raises OSError."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as exc:
        # Some file systems cannot fsync a directory (EINVAL); nothing more can be done there.
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def ensure_dir(directory: Path) -> None:
    """Create ``directory`` and missing parents, making each new entry durable.

    Raises :class:`OSError` (e.g. :class:`FileExistsError` when a path component is a file).
    """
    missing: list[Path] = []
    current = directory
    while not current.is_dir():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for new_dir in reversed(missing):
        with contextlib.suppress(FileExistsError):
            new_dir.mkdir()
        if not new_dir.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(new_dir))
        fsync_dir(new_dir.parent)


def write_atomic(path: Path, data: bytes, *, mode: int = FILE_MODE) -> None:
    """Replace ``path``'s content with ``data`` atomically and durably (mode 0o644, or
    ``mode``: the temporary file is 0o600 from its creation, so a secret written with
    ``mode=0o600`` is never readable by others, not even for a moment).

    The directory must exist. Raises :class:`OSError`; on failure the temporary file is
    removed and ``path`` keeps its previous content.
    """
    directory = path.parent
    fd, temp_name = tempfile.mkstemp(prefix=temp_prefix(path), dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
    fsync_dir(directory)


def read_text_or_none(path: Path, *, max_bytes: int | None = None) -> str | None:
    """The UTF-8 text of ``path``, or ``None`` if it does not exist.

    Raises :class:`OSError` if it cannot be read, :class:`ValueError` (including
    :class:`UnicodeDecodeError`) if it is not UTF-8 or longer than ``max_bytes``.
    """
    try:
        with path.open("rb") as handle:
            data = handle.read() if max_bytes is None else handle.read(max_bytes + 1)
    except FileNotFoundError:
        return None
    if max_bytes is not None and len(data) > max_bytes:
        raise ValueError(f"{path} is larger than {max_bytes} bytes")
    return data.decode("utf-8")


def remove_stale_temp_files(path: Path, *, older_than: float) -> list[Path]:
    """Remove ``path``'s leftover temporary files whose mtime is more than ``older_than``
    seconds away from now (either way: a gateway without a real-time clock may boot with a
    clock behind the files it wrote). Younger ones may belong to a write in progress.

    ``older_than=0`` removes them all. Returns the removed files; files that vanish or
    cannot be removed are skipped.
    """
    removed: list[Path] = []
    now = time.time()
    prefix = temp_prefix(path)
    try:
        candidates = [entry for entry in path.parent.iterdir() if entry.name.startswith(prefix)]
    except OSError:
        return removed
    for candidate in candidates:
        try:
            if abs(now - candidate.lstat().st_mtime) < older_than:
                continue
            candidate.unlink()
        except OSError:
            continue
        removed.append(candidate)
    return removed
