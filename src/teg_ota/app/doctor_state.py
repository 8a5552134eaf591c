"""``teg-ota doctor``'s checks of the gateway's own state: the data directory and the update
journal here, the other records in :mod:`~teg_ota.app.doctor_records`, the outbox in
:mod:`~teg_ota.app.doctor_outbox`, the lock in :mod:`~teg_ota.app.doctor_lock`.

:func:`state_checks` needs a data directory path alone (no Docker, no broker), and only
reads: it creates, writes, renames and removes nothing, so it is safe next to a running
runner and on a damaged directory.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from teg_ota.adapters.atomic_file import read_text_or_none
from teg_ota.adapters.file_version_store import JOURNAL_FILE, MAX_JSON_FILE_BYTES
from teg_ota.adapters.mqtt.outbox import OUTBOX_DIR_NAME
from teg_ota.adapters.mqtt.outbox_health import first_file_in_the_way, nearest_existing
from teg_ota.adapters.store_files import parse_journal
from teg_ota.app.doctor_check import DIRECTORY, MISSING, REGULAR, Check, describe, kind, remove_fix
from teg_ota.app.doctor_lock import lock_check, runner_running
from teg_ota.app.doctor_outbox import outbox_checks
from teg_ota.app.doctor_records import record_checks
from teg_ota.app.settings import Settings

MIN_FREE_BYTES = 2**20
"""Less free space than this in the data directory's file system is a failure: the records
and the outbox entries are small, but each write needs room for a whole temporary copy."""
DATA_DIR = "data directory"


def state_checks(
    source: Settings | str | Path,
    default_version: str | None = None,
    *,
    clock: Callable[[], float] = time.time,
) -> Iterator[Check]:
    """The data directory, the records in it, the journal, the outbox and the lock.

    ``source`` is the settings (their data path and default version) or a data directory
    path alone; ``clock`` is the wall clock the timestamp mark is compared with."""
    if isinstance(source, Settings):
        data, default_version = Path(source.data_path), source.default_version
    else:
        data = Path(source)
    yield data_dir_check(data)
    running = runner_running(data)
    if kind(data) == DIRECTORY:
        yield from record_checks(data, default_version)
        yield journal_check(data, running)
        yield from outbox_checks(data / OUTBOX_DIR_NAME, clock())
    yield lock_check(data, running)


# -- the data directory ---------------------------------------------------------------------


def data_dir_check(data: Path) -> Check:
    found = kind(data)
    if found == MISSING:
        return _missing_data_dir(data)
    if found != DIRECTORY:
        return Check(
            DATA_DIR,
            False,
            f"{data} is not a directory (GATEWAY_DATA_PATH)",
            f"remove or rename {data}, or set GATEWAY_DATA_PATH to a directory",
        )
    problem, free = _file_system_problem(data)
    if problem is not None:
        return problem
    if not os.access(data, os.R_OK | os.W_OK | os.X_OK):
        return Check(
            DATA_DIR,
            False,
            f"{data} is not writable by uid {os.geteuid()}",
            f"make {data} writable by the user teg-ota runs as (chown that user {data}; "
            f"chmod u+rwx {data})",
        )
    return Check(DATA_DIR, True, f"{data} is a writable directory; {free // 2**20} MiB free")


def _missing_data_dir(data: Path) -> Check:
    in_the_way = first_file_in_the_way(data)
    if in_the_way is not None:
        return Check(
            DATA_DIR,
            False,
            f"{data} does not exist and cannot be created: {in_the_way} is not a directory",
            f"remove or rename {in_the_way}, or set GATEWAY_DATA_PATH elsewhere",
        )
    parent = nearest_existing(data)
    problem, _ = _file_system_problem(parent, data)
    if problem is not None:
        return problem
    if not os.access(parent, os.W_OK | os.X_OK):
        return Check(
            DATA_DIR,
            False,
            f"{data} does not exist and {parent} is not writable by uid {os.geteuid()}",
            f"create it for the user teg-ota runs as: mkdir -p {data} && chown that user {data}",
        )
    return Check(DATA_DIR, True, f"{data} does not exist yet: it will be created at first start")


def _file_system_problem(directory: Path, data: Path | None = None) -> tuple[Check | None, int]:
    """A read-only or full file system under ``directory`` (``data`` is the data path
    named in the message when ``directory`` is the parent it will be created in), and the
    bytes free there."""
    data = data or directory
    try:
        vfs = os.statvfs(directory)
    except OSError as exc:
        return Check(
            DATA_DIR,
            False,
            f"cannot query the file system of {directory}: {describe(exc)}",
            f"check {directory} and the disk it is on",
        ), 0
    if vfs.f_flag & os.ST_RDONLY:
        return Check(
            DATA_DIR,
            False,
            f"{data} is on a read-only file system: nothing can be recorded (updates are "
            "not remembered across restarts)",
            f"remount it read-write (mount -o remount,rw <its mount point>; see df {directory})"
            ", or check the disk for errors if the kernel remounted it read-only",
        ), 0
    free = vfs.f_bavail * vfs.f_frsize
    if free < MIN_FREE_BYTES:
        return Check(
            DATA_DIR,
            False,
            f"the file system of {data} is full: {free // 1024} KiB free (less than "
            f"{MIN_FREE_BYTES // 2**20} MiB)",
            f"free space on it (df -h {directory}; docker image prune; "
            "journalctl --vacuum-size=100M)",
        ), free
    return None, free


# -- the update journal ---------------------------------------------------------------------


def journal_check(data: Path, running: bool | None) -> Check:
    path = data / JOURNAL_FILE
    found = kind(path)
    if found == MISSING:
        return Check("update journal", True, f"no update in flight ({path} absent)")
    if found != REGULAR:
        return Check(
            "update journal",
            False,
            f"{path} is a {found}, not a file: no update can be recorded, so none can be "
            "recovered after a power cut",
            remove_fix(path, "the next update writes the journal again"),
        )
    try:
        text = read_text_or_none(path, max_bytes=MAX_JSON_FILE_BYTES)
        journal = None if text is None else parse_journal(text)
    except OSError as exc:
        return Check(
            "update journal",
            False,
            f"{path} is unreadable ({describe(exc)})",
            f"check its permissions and the disk (ls -l {path}); delete it if it stays "
            "unreadable (an interrupted update is then not recovered)",
        )
    except (ValueError, TypeError, RecursionError) as exc:
        return Check(
            "update journal",
            False,
            f"{path} is corrupt ({describe(exc)})",
            f"nothing is needed: the next start keeps it as {path.name}.corrupt-<unix time> "
            f"and runs the last launched version; or delete it now (rm {path})",
        )
    if journal is None:  # removed meanwhile: the runner finished the update
        return Check("update journal", True, f"no update in flight ({path} absent)")
    update = f"an update to {journal.target}" + (
        f" from {journal.previous}" if journal.previous else ""
    )
    when = _local_time(journal.started_at)
    if running:
        return Check(
            "update journal",
            True,
            f"{update} is in progress: phase {journal.phase.value} (started {when})",
        )
    return Check(
        "update journal",
        True,
        f"{update} was interrupted in phase {journal.phase.value} (started {when}); the next "
        "start recovers it",
    )


def _local_time(unix_s: float) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(unix_s))
    except (OverflowError, ValueError, OSError):
        return f"at unix time {unix_s}"
