"""What the Git benchmarks (``git_speed.py``, ``growth.py``) share: a remote of any size
built with the ``git`` CLI, the ``git`` reference runs, teg-ota's adapter in a child, and
``git daemon`` serving the remote over the network (``git://`` on the loopback).

The remote is a bare repository reached as ``file://`` (as teg-ota's integration tests do,
``tests/integration/git_remote.py``) or through :func:`git_daemon` as ``git://``, built
with ``git fast-import`` so 2,000 commits take a second: each commit changes one of 50
small files, tags (annotated) are spread evenly over the history. New commits arrive the
same way, so the remote never needs a work tree.

The ``git`` runs have an isolated configuration (no system or user config, no ``GIT_*``
variables from the machine), like the tests' ``Git`` helper.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

FILES = 50
"""Files in the tree: each commit changes one of them."""

_STAMP = 1_700_000_000


def git_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(HOME=str(home), GIT_CONFIG_NOSYSTEM="1", LC_ALL="C")
    return env


@dataclass
class Remote:
    """A bare remote with ``commits`` commits on ``main`` and ``tags`` annotated tags."""

    bare: Path
    env: dict[str, str]
    commits: int = 0

    @property
    def url(self) -> str:
        return self.bare.as_uri()

    def git(self, cwd: Path, *args: str) -> float:
        """Run ``git args`` in ``cwd``; its wall-clock time in seconds."""
        started = time.perf_counter()
        subprocess.run(  # noqa: S603 - fixed argument list, no shell
            ["git", "-c", "advice.detachedHead=false", *args],  # noqa: S607 - git from PATH
            cwd=cwd,
            env=self.env,
            check=True,
            capture_output=True,
            timeout=300,
        )
        return time.perf_counter() - started

    def import_stream(self, stream: bytes) -> None:
        subprocess.run(
            ["git", "fast-import", "--quiet"],  # noqa: S607 - git from PATH
            input=stream,
            cwd=self.bare,
            env=self.env,
            check=True,
            capture_output=True,
            timeout=300,
        )

    def add_commit(self, tag: str | None = None) -> None:
        """One more commit on ``main`` (and an annotated ``tag`` on it)."""
        self.commits += 1
        parent = b"from refs/heads/main^0\n" if self.commits > 1 else b""
        stream = _commit(self.commits, parent)
        if tag is not None:
            stream += _tag(tag, b"refs/heads/main")
        self.import_stream(stream)


def build_remote(base: Path, commits: int, tags: int) -> Remote:
    """A bare remote under ``base`` with ``commits`` commits and ``tags`` annotated tags
    (``v1.1`` .. ``v1.<tags>``, the newest on the last commit, spread evenly over the
    history; with more tags than commits some commits carry several)."""
    base.mkdir(parents=True, exist_ok=True)
    home = base / "home"
    home.mkdir(exist_ok=True)
    remote = Remote(bare=base / "remote.git", env=git_env(home))
    remote.git(base, "init", "-q", "--bare", "-b", "main", str(remote.bare))
    parts = [_commit(n, b"from :%d\n" % (n - 1) if n > 1 else b"") for n in range(1, commits + 1)]
    for t in range(tags):
        mark = max(1, commits - (t * commits) // max(tags, 1))
        parts.append(_tag(f"v1.{tags - t}", b":%d" % mark))
    remote.import_stream(b"".join(parts))
    remote.commits = commits
    return remote


def _commit(n: int, parent: bytes) -> bytes:
    """Commit number ``n`` (mark ``:n`` within one stream), changing one file."""
    message = f"commit {n}\n".encode()
    content = f"value = {n}\n".encode()
    return (
        b"commit refs/heads/main\n"
        + b"mark :%d\n" % n
        + b"committer Bench <bench@example.invalid> %d +0000\n" % (_STAMP + n)
        + b"data %d\n%s" % (len(message), message)
        + parent
        + b"M 100644 inline src/module%d.py\ndata %d\n%s\n" % (n % FILES, len(content), content)
    )


def _tag(name: str, target: bytes) -> bytes:
    message = f"release {name}\n".encode()
    return (
        f"tag {name}\n".encode()
        + b"from "
        + target
        + b"\n"
        + b"tagger Bench <bench@example.invalid> %d +0000\n" % _STAMP
        + b"data %d\n%s\n" % (len(message), message)
    )


# ----------------------------------------------------------------- git daemon


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def git_daemon(remote: Remote) -> Iterator[str]:
    """``git daemon`` (Git's own server, in C) serving ``remote`` over ``git://`` on the
    loopback while the block runs; yields the remote's ``git://`` URL. A real network
    transport: the client negotiates a pack with ``upload-pack`` over TCP, as a gateway does
    with its server, only without the wire's latency and bandwidth."""
    base = remote.bare.parent
    port = _free_port()
    daemon = subprocess.Popen(  # noqa: S603 - fixed argument list, no shell
        [  # noqa: S607 - git from PATH
            "git",
            "daemon",
            "--reuseaddr",
            f"--base-path={base}",
            "--export-all",
            "--enable=upload-pack",
            f"--port={port}",
            "--listen=127.0.0.1",
            str(base),
        ],
        env=remote.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_listening(daemon, port)
        yield f"git://127.0.0.1:{port}/{remote.bare.name}"
    finally:
        daemon.terminate()
        try:
            daemon.wait(10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(10)


def _wait_listening(daemon: subprocess.Popen[bytes], port: int, within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise RuntimeError(f"git daemon exited with {daemon.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"git daemon did not listen on port {port} within {within_s:g} s")


# ----------------------------------------------------------------- teg-ota in a child

_CHILD = r"""
import json, resource, sys, time
from loguru import logger
logger.remove()
from teg_ota.adapters.git import DulwichSourceRepo
path, url, version = sys.argv[1], sys.argv[2], sys.argv[3]
started = time.perf_counter()
if version:
    repo = DulwichSourceRepo(path, url=url)
    repo.fetch()
    repo.reset_to(repo.resolve(version))
elapsed = time.perf_counter() - started
try:  # this process's own peak: ru_maxrss can start at the parent's (vfork + exec)
    with open("/proc/self/status") as status:
        rss_kib = next(int(l.split()[1]) for l in status if l.startswith("VmHWM:"))
except (OSError, StopIteration):
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": elapsed, "rss_kib": rss_kib}))
"""


def adapter_in_child(path: Path, url: str, version: str) -> tuple[float, float]:
    """teg-ota's Git part of an update (fetch, resolve ``version``, reset the work tree) in a
    fresh interpreter: (seconds inside the child, its peak RSS in MiB). The peak is
    ``VmHWM``, the child's own memory: ``ru_maxrss`` may carry the parent's peak over a
    vfork + exec. An empty ``version`` only imports the adapter: the RSS the work adds to."""
    result = subprocess.run(  # noqa: S603 - this interpreter, fixed code, no shell
        [sys.executable, "-c", _CHILD, str(path), url, version],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    data = json.loads(result.stdout.strip().splitlines()[-1])
    return float(data["seconds"]), float(data["rss_kib"]) / 1024.0
