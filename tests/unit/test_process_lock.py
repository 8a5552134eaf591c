"""One gateway per data directory: the abstract socket and the flock file, each enough to
keep a second teg-ota out, and the socket alone when the lock file cannot be used."""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from loguru import logger

from teg_ota.app.process_lock import LOCK_NAME, AlreadyLocked, ProcessLock, socket_name


@pytest.fixture
def held() -> Iterator[list[ProcessLock]]:
    """Locks a test took; released whatever the test's end (an abstract name would
    otherwise stay bound until the socket is collected)."""
    locks: list[ProcessLock] = []
    yield locks
    for lock in locks:
        lock.release()


def take(held: list[ProcessLock], data: Path) -> ProcessLock:
    lock = ProcessLock(data)
    lock.acquire()
    held.append(lock)
    return lock


@pytest.fixture
def logs() -> Iterator[list[tuple[str, str]]]:
    """``(level, message)`` of everything teg_ota logs at INFO and above."""
    records: list[tuple[str, str]] = []
    logger.enable("teg_ota")
    sink = logger.add(
        lambda m: records.append((m.record["level"].name, m.record["message"])), level="INFO"
    )
    yield records
    logger.remove(sink)
    logger.disable("teg_ota")  # the library's default


def flock_free(path: Path) -> bool:
    """Whether another open file description can take the flock on ``path`` now."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def socket_free(data: Path) -> bool:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(socket_name(data))
    except OSError:
        return False
    finally:
        sock.close()
    return True


# ------------------------------------------------------------------ a usable lock file


def test_a_second_lock_on_the_same_data_path_is_refused(
    tmp_path: Path, held: list[ProcessLock]
) -> None:
    first = take(held, tmp_path)

    with pytest.raises(AlreadyLocked, match="another teg-ota process"):
        ProcessLock(tmp_path).acquire()

    assert first.file_problem is None
    assert (tmp_path / LOCK_NAME).read_text() == str(os.getpid())
    assert not flock_free(tmp_path / LOCK_NAME)
    assert not socket_free(tmp_path)


def test_the_abstract_socket_alone_refuses_a_second_lock(tmp_path: Path) -> None:
    """Another teg-ota holding only the socket (its lock file was unusable): refused, and
    the refused lock leaves the lock file unlocked."""
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(socket_name(tmp_path))
    try:
        with pytest.raises(AlreadyLocked, match=f"is managing {tmp_path}"):
            ProcessLock(tmp_path).acquire()
    finally:
        other.close()

    lock_file = tmp_path / LOCK_NAME
    assert not lock_file.exists() or flock_free(lock_file)


def test_the_flock_alone_refuses_a_second_lock_naming_the_holders_pid(
    tmp_path: Path, held: list[ProcessLock]
) -> None:
    """Another teg-ota holding only the flock (one in another network namespace, which does
    not share abstract sockets): refused with its pid, and the socket taken meanwhile is
    given back."""
    fd = os.open(tmp_path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, b"4242")
        refused = ProcessLock(tmp_path)
        with pytest.raises(AlreadyLocked, match=r"\(pid 4242\)"):
            refused.acquire()
        assert socket_free(tmp_path)
    finally:
        os.close(fd)

    take(held, tmp_path)  # the holder is gone: free again


def test_different_data_paths_do_not_conflict(tmp_path: Path, held: list[ProcessLock]) -> None:
    take(held, tmp_path / "a")
    take(held, tmp_path / "b")

    assert socket_name(tmp_path / "a") != socket_name(tmp_path / "b")
    assert all(lock.file_problem is None for lock in held)


def test_the_same_directory_through_a_symlink_conflicts(
    tmp_path: Path, held: list[ProcessLock]
) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    take(held, real)

    assert socket_name(link) == socket_name(real)
    with pytest.raises(AlreadyLocked):
        ProcessLock(link).acquire()


def test_release_frees_both_locks(tmp_path: Path, held: list[ProcessLock]) -> None:
    first = ProcessLock(tmp_path)
    first.acquire()
    first.release()

    assert socket_free(tmp_path)
    assert flock_free(tmp_path / LOCK_NAME)
    take(held, tmp_path)


def test_the_context_manager_releases_on_exit(tmp_path: Path, held: list[ProcessLock]) -> None:
    with ProcessLock(tmp_path), pytest.raises(AlreadyLocked):
        ProcessLock(tmp_path).acquire()

    take(held, tmp_path)


def test_release_twice_and_release_unacquired_are_harmless(tmp_path: Path) -> None:
    lock = ProcessLock(tmp_path)
    lock.release()
    lock.acquire()
    lock.release()
    lock.release()

    assert socket_free(tmp_path)


# ------------------------------------------------------------- an unusable lock file


def _a_directory(lock_file: Path) -> str:
    lock_file.mkdir()
    return os.strerror(errno.EISDIR)


def _a_symlink_loop(lock_file: Path) -> str:
    lock_file.symlink_to(lock_file.name)
    return os.strerror(errno.ELOOP)


@pytest.mark.parametrize("block", [_a_directory, _a_symlink_loop], ids=["directory", "loop"])
def test_an_unusable_lock_file_leaves_the_socket_holding(
    tmp_path: Path,
    held: list[ProcessLock],
    logs: list[tuple[str, str]],
    block: Callable[[Path], str],
) -> None:
    lock_file = tmp_path / LOCK_NAME
    reason = block(lock_file)

    lock = take(held, tmp_path)

    assert lock.file_problem == f"{lock_file}: {reason}"
    assert not socket_free(tmp_path)
    with pytest.raises(AlreadyLocked):
        ProcessLock(tmp_path).acquire()
    errors = [message for level, message in logs if level == "ERROR"]
    assert len(errors) == 1
    assert str(lock_file) in errors[0]
    assert f"Fix: make {tmp_path} writable and remove whatever is at {lock_file}" in errors[0]


def test_an_unusable_lock_file_through_a_symlink_still_conflicts(
    tmp_path: Path, held: list[ProcessLock]
) -> None:
    """With no lock file to share, only the socket (named after the real path) can see
    that the link and the directory are one."""
    real = tmp_path / "real"
    real.mkdir()
    (real / LOCK_NAME).mkdir()
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    assert take(held, real).file_problem is not None

    with pytest.raises(AlreadyLocked):
        ProcessLock(link).acquire()


def test_a_data_path_that_is_a_file_still_locks_by_the_socket(
    tmp_path: Path, held: list[ProcessLock]
) -> None:
    data = tmp_path / "data"
    data.write_text("not a directory")

    lock = take(held, data)

    assert lock.file_problem is not None
    assert str(data / LOCK_NAME) in lock.file_problem
    with pytest.raises(AlreadyLocked):
        ProcessLock(data).acquire()


def test_release_after_an_unusable_lock_file_frees_the_socket(
    tmp_path: Path, held: list[ProcessLock]
) -> None:
    (tmp_path / LOCK_NAME).mkdir()
    first = ProcessLock(tmp_path)
    first.acquire()
    first.release()

    assert socket_free(tmp_path)
    assert take(held, tmp_path).file_problem is not None
