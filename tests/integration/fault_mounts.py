"""Disk faults for the degraded-mode tests: a tiny tmpfs, a read-only bind mount (no pytest).

We are root on the test machine, so faults are real mounts made with ``mount``: a full
disk is a small tmpfs filled with a filler file, a read-only disk is a bind mount of a
directory over itself, remounted ``ro`` (undone by unmounting it). Remounting a whole
tmpfs ``ro`` is refused ("busy") while the runner holds its lock file open for writing; a
read-only bind mount is not, and every path opened after it gets ``EROFS``, as on a card
the kernel turned read-only. :class:`FaultMounts` remembers every
mount it made and :meth:`FaultMounts.unmount_all` undoes them in reverse order (lazily if
something still holds one: a teardown must never leave a mount behind).
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import time
from pathlib import Path

FILLER_NAME = "filler.bin"


def _mount(*args: str) -> None:
    proc = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"mount {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")


def _remount_read_only(path: Path, attempts: int = 50) -> None:
    """Remount the bind at ``path`` ``ro``, again while the kernel says "busy".

    The remount is refused while any file is open for writing through the new bind, and
    the running gateway opens one now and then (an outbox entry, a temporary file) in
    the instant between the bind and the remount; each such write lasts milliseconds.
    """
    for _ in range(attempts - 1):
        proc = subprocess.run(
            ["mount", "-o", "remount,bind,ro", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode == 0:
            return
        if "busy" not in proc.stderr:
            raise RuntimeError(f"remount {path} read-only failed: {proc.stderr}")
        time.sleep(0.1)
    _mount("-o", "remount,bind,ro", str(path))


def mount_points() -> list[str]:
    """Every mount point of this mount namespace (mountinfo's fifth field)."""
    with open("/proc/self/mountinfo") as mountinfo:
        return [line.split()[4] for line in mountinfo]


def is_mounted(path: Path) -> bool:
    return str(path) in mount_points()


def mounting_is_possible() -> str | None:
    """Why these tests cannot mount here (not root, no ``mount``), or None."""
    if os.geteuid() != 0:
        return "mounting needs root"
    if shutil.which("mount") is None or shutil.which("umount") is None:
        return "the mount and umount commands are not installed"
    return None


class FaultMounts:
    """Mounts made by one test; :meth:`unmount_all` at teardown."""

    def __init__(self) -> None:
        self._points: list[Path] = []

    def tmpfs(self, path: Path, size: str = "64k") -> Path:
        """A fresh tmpfs of ``size`` at ``path`` (created if missing; hides what was there)."""
        path.mkdir(parents=True, exist_ok=True)
        _mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path))
        self._points.append(path)
        return path

    def read_only_bind(self, path: Path) -> Path:
        """``path`` bind-mounted read-only over itself: its files stay, nothing can change."""
        _mount("--bind", str(path), str(path))
        self._points.append(path)
        _remount_read_only(path)
        return path

    def unmount(self, path: Path) -> None:
        """Undo the latest mount at ``path`` (a read-only bind: writable again)."""
        assert path in self._points, f"{path} is not one of this test's mounts"
        subprocess.run(["umount", str(path)], capture_output=True, text=True, check=True)
        self._points.reverse()
        self._points.remove(path)
        self._points.reverse()

    def unmount_all(self) -> None:
        """Undo every mount (stacked ones too), last first; a busy one is detached lazily."""
        left: list[Path] = []
        while self._points:
            point = self._points.pop()
            while is_mounted(point):
                done = subprocess.run(["umount", str(point)], capture_output=True, check=False)
                if done.returncode != 0:
                    lazy = subprocess.run(["umount", "-l", str(point)], check=False)
                    if lazy.returncode != 0:
                        left.append(point)
                        break
        if left:
            raise RuntimeError(f"could not unmount {left}")


def fill(directory: Path, chunk: int = 4096) -> Path:
    """Write a filler file in ``directory`` until the file system is full; its path."""
    filler = directory / FILLER_NAME
    block = b"\0" * chunk
    with filler.open("wb", buffering=0) as out:
        while True:
            try:
                out.write(block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    return filler


def free_bytes(directory: Path) -> int:
    stat = os.statvfs(directory)
    return stat.f_bavail * stat.f_frsize
