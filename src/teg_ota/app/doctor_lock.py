"""``teg-ota doctor``'s check of the data directory's lock (:mod:`teg_ota.app.process_lock`):
whether the lock file can be used, and whether a runner holds the lock now.

Whether the runner holds it is read from ``/proc/net/unix`` (bound abstract sockets, listed
as ``@name``): nothing a starting runner could collide with. Only when that cannot be read
is the socket name bound and released at once, which leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from pathlib import Path

from teg_ota.adapters.atomic_file import read_text_or_none
from teg_ota.app.doctor_check import DIRECTORY, MISSING, REGULAR, Check, kind, remove_fix
from teg_ota.app.process_lock import LOCK_NAME, socket_name

PROC_NET_UNIX = Path("/proc/net/unix")


def runner_running(data: Path) -> bool | None:
    """Whether a teg-ota process holds ``data``'s lock socket; ``None`` when unknown.

    Read from ``/proc/net/unix`` (bound abstract sockets, listed as ``@name``): no probe a
    starting runner could collide with. Without it, the name is bound and released at once.
    """
    name = socket_name(data)
    try:
        listing = PROC_NET_UNIX.read_text(encoding="ascii", errors="replace")
    except OSError:
        return _bind_probe(name)
    wanted = "@" + name[1:].decode("ascii")
    return any(line.split()[-1:] == [wanted] for line in listing.splitlines()[1:])


def _bind_probe(name: bytes) -> bool | None:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        probe.bind(name)
    except OSError as exc:
        return True if exc.errno == errno.EADDRINUSE else None
    finally:
        probe.close()
    return False


def lock_check(data: Path, running: bool | None) -> Check:
    path = data / LOCK_NAME
    holder = _runner_line(data, path, running)
    found = kind(path) if kind(data) == DIRECTORY else MISSING  # else: the data dir's check
    if found not in (MISSING, REGULAR):
        return Check(
            "lock",
            False,
            f"{path} is a {found}, not a file: the runner holds only its lock socket (a "
            f"teg-ota in another network namespace is not kept out); {holder}",
            remove_fix(path, "the runner creates the lock file again at its next start"),
        )
    if found == REGULAR and not os.access(path, os.R_OK | os.W_OK):
        return Check(
            "lock",
            False,
            f"{path} cannot be opened for writing: the runner holds only its lock socket; {holder}",
            f"make it writable (chmod 644 {path}; chown it to the teg-ota user) or remove it",
        )
    return Check("lock", True, holder)


def _runner_line(data: Path, path: Path, running: bool | None) -> str:
    if running is None:
        return f"cannot tell whether a teg-ota process manages {data}"
    if not running:
        return f"no teg-ota process manages {data} (the runner is not running)"
    pid = "?"
    if kind(path) == REGULAR:
        with contextlib.suppress(OSError, ValueError):
            pid = (read_text_or_none(path, max_bytes=32) or "").strip() or "?"
    return (
        f"the runner (pid {pid}) manages {data}; teg-ota update and rollback are refused "
        "while it runs"
    )
