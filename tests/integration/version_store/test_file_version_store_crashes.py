"""FileVersionStore under stress (tmp_path): leftovers of killed writers, threads, SIGKILL.

The crash tests SIGKILL a child process mid-write. That proves a crashed process never
leaves a torn file; it cannot prove durability across a power cut (the page cache survives
a SIGKILL), which rests on the fsyncs in write_atomic.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from file_version_store_support import sample_journal, temp_files

import teg_ota
from teg_ota.adapters.atomic_file import (
    read_text_or_none,
    remove_stale_temp_files,
    temp_prefix,
    write_atomic,
)
from teg_ota.adapters.file_version_store import (
    FAILED_FILE,
    JOURNAL_FILE,
    KNOWN_GOOD_FILE,
    KNOWN_GOOD_HISTORY_FILE,
    LAST_LAUNCHED_FILE,
    PREVIOUS_KNOWN_GOOD_FILE,
    FileVersionStore,
)
from teg_ota.domain.model.journal import FailedVersion

SRC_DIR = Path(teg_ota.__file__).resolve().parents[1]

# -- leftovers and threads -----------------------------------------------------------------


def test_construction_removes_stale_temp_files_of_its_own_files_only(tmp_path: Path) -> None:
    old = time.time() - 3600
    stale = [
        tmp_path / f"{temp_prefix(tmp_path / name)}abc123"
        for name in (
            LAST_LAUNCHED_FILE,
            KNOWN_GOOD_FILE,
            PREVIOUS_KNOWN_GOOD_FILE,
            KNOWN_GOOD_HISTORY_FILE,
            FAILED_FILE,
            JOURNAL_FILE,
        )
    ]
    fresh = tmp_path / f"{temp_prefix(tmp_path / JOURNAL_FILE)}inflight"  # a write in progress
    foreign = tmp_path / ".outbox.json.tmp-xyz"
    for path in [*stale, fresh, foreign]:
        path.write_text("partial")
    for path in [*stale, foreign]:
        os.utime(path, (old, old))
    future = time.time() + 3600  # a clock that was set back after a reboot
    far_future_leftover = tmp_path / f"{temp_prefix(tmp_path / LAST_LAUNCHED_FILE)}zzz"
    far_future_leftover.write_text("partial")
    os.utime(far_future_leftover, (future, future))

    FileVersionStore(tmp_path)

    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([fresh.name, foreign.name])
    FileVersionStore(tmp_path, stale_temp_after=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == [foreign.name]


def test_concurrent_use_from_threads(tmp_path: Path) -> None:
    store = FileVersionStore(tmp_path, default_version="v0.9.0")
    versions = [f"v1.{i}" for i in range(20)]
    errors: list[BaseException] = []

    def writer(offset: int) -> None:
        try:
            for version in versions[offset:] + versions[:offset]:
                store.set_last_launched(version)
                store.set_known_good_history([version])
                store.write_journal(sample_journal(target=version))
                store.set_failed(FailedVersion(version, "x"))
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(100):
                assert store.last_launched() in [*versions, "v0.9.0"]
                assert store.known_good_history() in [*((v,) for v in versions), ()]
                journal = store.journal()
                assert journal is None or journal.target in versions
                failed = store.failed()
                assert failed is None or failed.version in versions
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i * 5,)) for i in range(4)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    fresh = FileVersionStore(tmp_path)
    assert fresh.last_launched() == store.last_launched()
    assert fresh.journal() == store.journal()
    assert not list(tmp_path.glob(".*.tmp-*"))


# -- crash safety --------------------------------------------------------------------------

SIZE = 1_000_000
CONTENT_A = b"a" * SIZE
CONTENT_B = b"b" * SIZE

ATOMIC_WRITER = f"""
import sys
from pathlib import Path
from teg_ota.adapters.atomic_file import write_atomic
path = Path(sys.argv[1])
contents = (b"b" * {SIZE}, b"a" * {SIZE})
print("ready", flush=True)
i = 0
while True:
    write_atomic(path, contents[i % 2])
    i += 1
"""

STORE_WRITER = """
import sys
from teg_ota.adapters.file_version_store import FileVersionStore
store = FileVersionStore(sys.argv[1], default_version="v0.0.0-default")
print("ready", flush=True)
i = 0
while True:
    store.set_last_launched(("v2.0.0", "v1.0.0")[i % 2])
    i += 1
"""


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC_DIR), env.get("PYTHONPATH")]))
    return env


def start_and_kill(code: str, arg: Path, delay: float) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(arg)], stdout=subprocess.PIPE, env=child_env()
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"ready\n"
        time.sleep(delay)
        assert child.poll() is None, "the writer died on its own"
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=10)
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL


def kill_window(tmp_path: Path) -> float:
    """A kill delay range covering a few writes on this machine's file system."""
    probe = tmp_path / "probe"
    started = time.monotonic()
    for content in (CONTENT_A, CONTENT_B):
        write_atomic(probe, content)
    per_write = (time.monotonic() - started) / 2
    probe.unlink()
    return min(0.2, max(0.02, 4 * per_write))


@pytest.mark.timeout(60)
def test_sigkill_during_write_atomic_never_leaves_a_torn_file(tmp_path: Path) -> None:
    target = tmp_path / "big.bin"
    write_atomic(target, CONTENT_A)
    window = kill_window(tmp_path)
    rng = random.Random()
    seen: set[bytes] = set()
    deadline = time.monotonic() + 12
    iterations = 0
    while iterations < 40 and time.monotonic() < deadline:
        iterations += 1
        start_and_kill(ATOMIC_WRITER, target, rng.uniform(0, window))
        content = target.read_bytes()
        assert content in (CONTENT_A, CONTENT_B), (
            f"torn file after kill {iterations}: {len(content)} bytes, "
            f"{content.count(b'a')} 'a' and {content.count(b'b')} 'b'"
        )
        seen.add(content[:1])
        leftovers = temp_files(target)
        assert len(leftovers) <= 1, leftovers  # at most the one write that was cut short
        assert remove_stale_temp_files(target, older_than=0) == leftovers
    assert iterations >= 10
    assert seen == {b"a", b"b"}, "the kills never landed after a completed write"
    assert read_text_or_none(target) in ("a" * SIZE, "b" * SIZE)


@pytest.mark.timeout(60)
def test_sigkill_during_set_last_launched_keeps_a_whole_version(
    tmp_path: Path, warnings_log: list[str]
) -> None:
    FileVersionStore(tmp_path).set_last_launched("v1.0.0")
    rng = random.Random()
    seen: set[str | None] = set()
    deadline = time.monotonic() + 8
    iterations = 0
    while iterations < 25 and time.monotonic() < deadline:
        iterations += 1
        start_and_kill(STORE_WRITER, tmp_path, rng.uniform(0, 0.02))
        assert len(temp_files(tmp_path / LAST_LAUNCHED_FILE)) <= 1
        store = FileVersionStore(tmp_path, "v0.0.0-default", stale_temp_after=0)
        assert temp_files(tmp_path / LAST_LAUNCHED_FILE) == []  # cleaned at construction
        version = store.last_launched()
        assert version in ("v1.0.0", "v2.0.0")
        seen.add(version)
    assert iterations >= 5
    assert warnings_log == []
    assert seen == {"v1.0.0", "v2.0.0"}
