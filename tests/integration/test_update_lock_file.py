"""The flock update lock on a real file system, held by real processes."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from harness import wait_until

from teg_ota.adapters.update_lock_file import FlockUpdateLock


def holder(path: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(["flock", str(path), "sleep", "600"], start_new_session=True)
    wait_until(
        lambda: subprocess.run(["flock", "-n", str(path), "true"], check=False).returncode != 0,
        10,
        "the holder to take the lock",
    )
    return proc


def test_held_by_another_process_then_released_when_it_is_killed(tmp_path: Path) -> None:
    path = tmp_path / "update.lock"
    proc = holder(path)
    lock = FlockUpdateLock(path)
    try:
        assert lock.try_acquire() is False
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
        wait_until(lock.try_acquire, 10, "the kernel to release the dead holder's lock")
        # Held by teg-ota now: another process cannot take it.
        assert subprocess.run(["flock", "-n", str(path), "true"], check=False).returncode != 0
    finally:
        lock.release()
    assert subprocess.run(["flock", "-n", str(path), "true"], check=False).returncode == 0


def test_created_0644_when_missing_and_a_stale_file_does_not_block(tmp_path: Path) -> None:
    path = tmp_path / "update.lock"
    lock = FlockUpdateLock(path)
    assert lock.try_acquire() and path.is_file()
    assert path.stat().st_mode & 0o777 == 0o644
    lock.release()
    assert FlockUpdateLock(path).try_acquire(), "a file nobody holds blocks nothing"


def test_a_symbolic_link_is_never_followed(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "would-be-created"
    path = tmp_path / "update.lock"
    path.symlink_to(target)
    lock = FlockUpdateLock(path)
    assert lock.try_acquire() is True, "unusable: counts as free, logged"
    assert not target.exists(), "the link's target was not created"
    lock.release()


def test_a_fifo_or_a_directory_is_not_a_lock(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.lock"
    os.mkfifo(fifo)
    assert FlockUpdateLock(fifo).try_acquire() is True
    directory = tmp_path / "dir.lock"
    directory.mkdir()
    assert FlockUpdateLock(directory).try_acquire() is True
