"""DulwichSourceRepo over a real network transport: ``git://`` from ``git daemon`` (Git's own
server, in C) on the loopback. The first clone leaves what ``git clone`` of the same URL
leaves, fetches bring new commits, new and moved tags, and a fetch asks the server only for
what is new since the last fetch, not since the first clone.

Correctness only; the speed of the same paths is measured in ``benchmarks/git_speed.py``.
Real repositories, the ``git`` CLI as fixture builder and oracle (git_remote.py).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from git_remote import Remote, assert_fsck_clean, make_remote_with_history, tree_files
from harness import free_port, port_open, wait_until

from teg_ota.adapters.git import DulwichSourceRepo
from teg_ota.ports.source_repo import FetchFailed


@dataclass
class Served:
    remote: Remote
    url: str
    port: int


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """A remote with a merge, two branches, an annotated and a lightweight tag and a nested
    directory, served by ``git daemon`` as ``git://127.0.0.1:<port>/remote.git``."""
    remote = make_remote_with_history(tmp_path)
    port = free_port()
    daemon = subprocess.Popen(
        [
            "git",
            "daemon",
            "--reuseaddr",
            f"--base-path={tmp_path}",
            "--export-all",
            "--enable=upload-pack",
            f"--port={port}",
            "--listen=127.0.0.1",
            str(tmp_path),
        ],
        env=remote.git.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: daemon.poll() is not None or port_open(port), 10, "git daemon to listen")
        assert daemon.poll() is None, f"git daemon exited with {daemon.returncode}"
        yield Served(remote, f"git://127.0.0.1:{port}/remote.git", port)
    finally:
        daemon.terminate()
        daemon.wait(10)


def _refs(remote: Remote, repo_dir: Path) -> dict[str, str]:
    out = remote.git(repo_dir, "for-each-ref", "--format=%(refname) %(objectname)")
    return dict(line.split(" ", 1) for line in out.splitlines())


def _commits_in_pack(remote: Remote, idx: Path) -> set[str]:
    out = remote.git(idx.parent, "verify-pack", "-v", str(idx))
    return {line.split()[0] for line in out.splitlines() if " commit " in line}


def test_first_clone_over_git_protocol_is_what_git_clone_makes(
    served: Served, tmp_path: Path
) -> None:
    remote, git = served.remote, served.remote.git
    path = tmp_path / "controller"
    oracle = tmp_path / "oracle"
    DulwichSourceRepo(str(path), url=served.url).fetch()
    git(tmp_path, "clone", "-q", served.url, str(oracle))
    assert _refs(remote, path) == _refs(remote, oracle)
    assert _refs(remote, path)["refs/remotes/origin/side"] == git(remote.bare, "rev-parse", "side")
    for key in ("remote.origin.url", "remote.origin.fetch", "branch.main.remote"):
        assert git(path, "config", key) == git(oracle, "config", key)
    assert git(path, "config", "remote.origin.url") == served.url
    assert git(path, "symbolic-ref", "HEAD") == "refs/heads/main"
    assert git(path, "symbolic-ref", "refs/remotes/origin/HEAD") == "refs/remotes/origin/main"
    assert git(path, "status", "--porcelain", "--untracked-files=all") == ""
    assert tree_files(path) == tree_files(oracle)
    assert (path / "lib" / "core" / "b.py").read_text() == "b = 1\n"
    assert_fsck_clean(remote, path)
    # Opened afresh, as the service does after a restart.
    repo = DulwichSourceRepo(str(path), url=served.url)
    assert repo.resolve("v2.0") == git(remote.bare, "rev-parse", "v2.0^{commit}")
    assert repo.resolve("v1.0") == remote.first
    assert repo.commit_exists(remote.first)


def test_fetch_over_git_protocol_brings_new_commits_and_tags(
    served: Served, tmp_path: Path
) -> None:
    remote, git = served.remote, served.remote.git
    path = tmp_path / "controller"
    repo = DulwichSourceRepo(str(path), url=served.url)
    repo.fetch()
    third = remote.commit({"lib/core/a.py": "a = 2\n", "new/deep/c.py": "c\n"}, "third")
    remote.tag("v3.0", annotated=True)
    remote.tag("release", third)  # moved
    remote.push()
    repo.fetch()
    remote_tags = {n: s for n, s in _refs(remote, remote.bare).items() if "/tags/" in n}
    assert {n: s for n, s in _refs(remote, path).items() if "/tags/" in n} == remote_tags
    assert git(path, "rev-parse", "refs/remotes/origin/main") == third
    assert repo.resolve("v3.0") == third
    assert repo.resolve("release") == third
    assert_fsck_clean(remote, path)
    repo.reset_to(third)
    assert (path / "new" / "deep" / "c.py").read_text() == "c\n"
    assert repo.current_commit() == third
    assert git(path, "status", "--porcelain", "--untracked-files=all") == ""
    packs = sorted((path / ".git" / "objects" / "pack").glob("*.idx"))
    repo.fetch()  # nothing new: no pack, same refs
    assert sorted((path / ".git" / "objects" / "pack").glob("*.idx")) == packs
    assert {n: s for n, s in _refs(remote, path).items() if "/tags/" in n} == remote_tags


def test_a_fetch_asks_only_for_what_is_new_since_the_last_fetch(
    served: Served, tmp_path: Path
) -> None:
    """The server is told what the last fetch brought (the remote-tracking branch), not
    only what the first clone checked out, so each pack holds the new commit alone."""
    remote, git = served.remote, served.remote.git
    path = tmp_path / "controller"
    repo = DulwichSourceRepo(str(path), url=served.url)
    repo.fetch()
    pack_dir = path / ".git" / "objects" / "pack"
    commits: list[str] = []
    for n in range(3):
        commits.append(remote.commit({"app.py": f"print({n})\n"}, f"change {n}"))
        remote.push()
        before = set(pack_dir.glob("*.idx"))
        repo.fetch()
        (new_pack,) = set(pack_dir.glob("*.idx")) - before
        assert _commits_in_pack(remote, new_pack) == {commits[-1]}
    assert git(path, "rev-parse", "refs/remotes/origin/main") == commits[-1]
    assert_fsck_clean(remote, path)


def test_a_fetch_after_the_remote_rewrote_its_branch_is_complete(
    served: Served, tmp_path: Path
) -> None:
    """The branch tip the clone offers is no longer on the server: the pack is larger, but
    everything the new refs reach arrives."""
    remote, git = served.remote, served.remote.git
    path = tmp_path / "controller"
    repo = DulwichSourceRepo(str(path), url=served.url)
    repo.fetch()
    old_tip = git(remote.bare, "rev-parse", "main")
    git(remote.work, "reset", "-q", "--hard", remote.first)
    rewritten = remote.commit({"app.py": "print('rewritten')\n", "x/y.py": "y\n"}, "rewrite")
    remote.tag("v4.0", annotated=True)
    remote.git(remote.work, "push", "-q", "--force", "origin", "main")
    remote.push()
    git(remote.bare, "tag", "-d", "v2.0", "release")  # the tags that still held the old tip
    git(remote.bare, "gc", "-q", "--prune=now")
    assert git(remote.bare, "cat-file", "-t", old_tip, check=False) == ""  # gone from it
    repo.fetch()
    assert git(path, "rev-parse", "refs/remotes/origin/main") == rewritten
    assert repo.resolve("v4.0") == rewritten
    assert_fsck_clean(remote, path)
    repo.reset_to(rewritten)
    assert (path / "x" / "y.py").read_text() == "y\n"


def test_a_failed_clone_over_git_protocol_leaves_nothing_behind(
    served: Served, tmp_path: Path
) -> None:
    path = tmp_path / "controller"
    missing = f"git://127.0.0.1:{served.port}/no-such-repo.git"
    with pytest.raises(FetchFailed, match="no-such-repo"):
        DulwichSourceRepo(str(path), url=missing).fetch()
    assert not path.exists()
    path.mkdir()  # a fresh, empty volume stays an empty directory
    closed = f"git://127.0.0.1:{free_port()}/remote.git"
    with pytest.raises(FetchFailed):
        DulwichSourceRepo(str(path), url=closed).fetch()
    assert path.is_dir() and list(path.iterdir()) == []
