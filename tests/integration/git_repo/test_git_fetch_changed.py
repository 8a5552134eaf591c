"""DulwichSourceRepo's fetch and first clone cost what changed (issue 14), and leave the
clone ``porcelain.clone`` / ``porcelain.fetch`` left: same refs, same config, complete.

Real repositories, the ``git`` CLI as fixture builder and oracle (git_remote.py);
``git fsck --full`` checks that every object a ref reaches arrived.
"""

from __future__ import annotations

from pathlib import Path

from git_remote import Remote, assert_fsck_clean, make_remote_with_history, tree_files

from teg_ota.adapters.git import DulwichSourceRepo


def _refs(remote: Remote, repo_dir: Path) -> dict[str, str]:
    out = remote.git(repo_dir, "for-each-ref", "--format=%(refname) %(objectname)")
    return dict(line.split(" ", 1) for line in out.splitlines())


def _loose_refs(dot_git: Path) -> set[str]:
    return {str(p.relative_to(dot_git)) for p in (dot_git / "refs").rglob("*") if p.is_file()}


def test_first_clone_is_what_git_clone_makes(tmp_path: Path) -> None:
    remote = make_remote_with_history(tmp_path)
    path = tmp_path / "controller"
    repo = DulwichSourceRepo(str(path), url=remote.url)
    repo.fetch()
    git = remote.git
    assert _refs(remote, path) == {
        **{
            name.replace("refs/heads/", "refs/remotes/origin/"): sha
            for name, sha in _refs(remote, remote.bare).items()
        },
        "refs/heads/main": git(remote.bare, "rev-parse", "main"),
        "refs/remotes/origin/HEAD": git(remote.bare, "rev-parse", "main"),
    }
    assert git(path, "symbolic-ref", "HEAD") == "refs/heads/main"
    assert git(path, "symbolic-ref", "refs/remotes/origin/HEAD") == "refs/remotes/origin/main"
    assert git(path, "config", "remote.origin.fetch") == "+refs/heads/*:refs/remotes/origin/*"
    assert git(path, "config", "branch.main.remote") == "origin"
    assert git(path, "config", "branch.main.merge") == "refs/heads/main"
    assert git(path, "status", "--porcelain", "--untracked-files=all") == ""
    assert tree_files(path) == set(git(path, "ls-files").splitlines())
    assert_fsck_clean(remote, path)
    assert repo.resolve("v2.0") == git(remote.bare, "rev-parse", "v2.0^{commit}")


def test_first_clone_from_a_remote_with_alternates_is_complete(tmp_path: Path) -> None:
    (tmp_path / "origin").mkdir()
    origin = make_remote_with_history(tmp_path / "origin")
    shared = tmp_path / "shared.git"
    # --shared: the remote holds no objects of its own, only a pointer to origin's.
    origin.git(tmp_path, "clone", "-q", "--bare", "--shared", str(origin.bare), str(shared))
    assert (shared / "objects" / "info" / "alternates").exists()
    path = tmp_path / "controller"
    repo = DulwichSourceRepo(str(path), url=shared.as_uri())
    assert repo.resolve("v2.0") == origin.git(origin.bare, "rev-parse", "v2.0^{commit}")
    assert not (path / ".git" / "objects" / "info" / "alternates").exists()
    assert_fsck_clean(origin, path)


def test_fetch_with_nothing_new_writes_no_ref(tmp_path: Path) -> None:
    remote = make_remote_with_history(tmp_path)
    path = tmp_path / "controller"
    repo = DulwichSourceRepo(str(path), url=remote.url)
    repo.fetch()
    dot_git = path / ".git"
    packed = (dot_git / "packed-refs").read_bytes()
    loose = _loose_refs(dot_git)
    packs = sorted((dot_git / "objects" / "pack").iterdir())
    repo.fetch()
    assert (dot_git / "packed-refs").read_bytes() == packed
    assert _loose_refs(dot_git) == loose
    assert sorted((dot_git / "objects" / "pack").iterdir()) == packs


def test_fetch_writes_only_the_refs_that_changed(tmp_path: Path) -> None:
    remote = make_remote_with_history(tmp_path)
    path = tmp_path / "controller"
    repo = DulwichSourceRepo(str(path), url=remote.url)
    repo.fetch()
    dot_git = path / ".git"
    before = _loose_refs(dot_git)
    third = remote.commit({"lib/core/a.py": "a = 2\n", "new/deep/c.py": "c\n"}, "third")
    remote.tag("v3.0", annotated=True)
    remote.tag("release", third)  # moved
    remote.push()
    repo.fetch()
    assert _loose_refs(dot_git) - before == {
        "refs/remotes/origin/main",
        "refs/tags/v3.0",
        "refs/tags/release",
    }
    assert _refs(remote, path)["refs/tags/release"] == third
    assert repo.resolve("v3.0") == third
    assert repo.resolve("release") == third
    reflog = (dot_git / "logs" / "refs" / "tags" / "v3.0").read_text()
    assert reflog.rstrip().endswith(f"fetch: from {remote.url}")
    assert_fsck_clean(remote, path)
    repo.reset_to(third)
    assert (path / "new" / "deep" / "c.py").read_text() == "c\n"


def test_fetch_after_a_clone_by_an_older_release(tmp_path: Path) -> None:
    """A clone with every ref loose (what ``porcelain.clone`` made) fetches the same way."""
    remote = make_remote_with_history(tmp_path)
    path = tmp_path / "controller"
    remote.git(tmp_path, "clone", "-q", remote.url, str(path))
    for ref in ("refs/remotes/origin/main", "refs/tags/v2.0"):
        sha = remote.git(path, "rev-parse", ref)
        remote.git(path, "update-ref", ref, sha)  # loose beside packed, as dulwich wrote
    repo = DulwichSourceRepo(str(path), url=remote.url)
    second = remote.commit({"app.py": "print('v3')\n"}, "v3")
    remote.tag("v3.0")
    remote.push()
    repo.fetch()
    assert repo.resolve("v3.0") == second
    assert repo.resolve("v2.0") == remote.git(remote.bare, "rev-parse", "v2.0^{commit}")
    assert_fsck_clean(remote, path)
