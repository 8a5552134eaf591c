"""DulwichSourceRepo getting the repository: the first clone (a fresh clone is as new as a
fetch), then fetches that bring new commits and moved tags, and the ways both fail.

Real repositories, the ``git`` CLI as fixture builder and oracle (git_remote.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from git_remote import Remote

from teg_ota.adapters.git import DulwichSourceRepo, SourceRepoUnavailable
from teg_ota.ports.source_repo import FetchFailed, SourceRepo, SourceRepoError, UnknownVersion

# ---------------------------------------------------------------------------- clone


def test_is_a_source_repo_and_constructor_touches_nothing(tmp_path: Path) -> None:
    path = tmp_path / "controller"
    repo = DulwichSourceRepo(str(path), url="http://user:s3cret@127.0.0.1:9/x.git")
    port: SourceRepo = repo  # structural typing, checked by mypy
    assert port.worktree == str(path)
    assert not path.exists()
    assert "s3cret" not in repr(repo)


def test_clones_when_missing(remote: Remote, controller_path: Path) -> None:
    repo = DulwichSourceRepo(str(controller_path), url=remote.url)
    assert repo.current_commit() == remote.first
    git = remote.git
    assert git(controller_path, "rev-parse", "HEAD") == remote.first
    assert git(controller_path, "config", "remote.origin.url") == remote.url
    assert git(controller_path, "rev-parse", "refs/remotes/origin/main") == remote.first
    assert (controller_path / "app.py").read_text() == "print('v1')\n"
    assert git(controller_path, "rev-parse", "--is-bare-repository") == "false"


def test_clones_into_an_empty_directory_from_a_plain_path(
    remote: Remote, controller_path: Path
) -> None:
    controller_path.mkdir()
    repo = DulwichSourceRepo(str(controller_path), url=str(remote.bare))
    assert repo.resolve("v1.0") == remote.first
    assert (controller_path / "README").exists()


def test_missing_repository_without_url(controller_path: Path) -> None:
    repo = DulwichSourceRepo(str(controller_path))
    with pytest.raises(SourceRepoUnavailable, match="no controller repository at"):
        repo.current_commit()
    assert issubclass(SourceRepoUnavailable, SourceRepoError)
    assert not controller_path.exists()


def test_non_repository_directory_is_refused(remote: Remote, controller_path: Path) -> None:
    controller_path.mkdir()
    (controller_path / "precious.txt").write_text("keep me")
    repo = DulwichSourceRepo(str(controller_path), url=remote.url)
    with pytest.raises(SourceRepoUnavailable, match="not a Git repository"):
        repo.fetch()
    assert (controller_path / "precious.txt").read_text() == "keep me"
    a_file = controller_path / "precious.txt"
    with pytest.raises(SourceRepoUnavailable, match="not a directory"):
        DulwichSourceRepo(str(a_file), url=remote.url).current_commit()


def test_failed_clone_leaves_nothing_behind(tmp_path: Path, controller_path: Path) -> None:
    repo = DulwichSourceRepo(str(controller_path), url=str(tmp_path / "nowhere.git"))
    with pytest.raises(FetchFailed):
        repo.current_commit()
    assert not controller_path.exists()
    controller_path.mkdir()
    with pytest.raises(FetchFailed):
        repo.current_commit()
    assert list(controller_path.iterdir()) == []


# ---------------------------------------------------------------------------- fetch


def test_fetch_brings_new_commit_and_tag(remote: Remote, controller_path: Path) -> None:
    repo = DulwichSourceRepo(str(controller_path), url=remote.url)
    repo.fetch()  # clones, then fetches (nothing new)
    second = remote.commit({"app.py": "print('v2')\n"}, "second")
    remote.tag("v1.1")
    remote.push()
    with pytest.raises(UnknownVersion):
        repo.resolve("v1.1")
    assert not repo.commit_exists(second)
    repo.fetch()
    assert repo.resolve("v1.1") == second
    assert repo.commit_exists(second)
    assert repo.resolve(second) == second
    assert remote.git(controller_path, "rev-parse", "refs/remotes/origin/main") == second
    # Fetch does not touch the work tree or HEAD.
    assert repo.current_commit() == remote.first


@pytest.mark.parametrize("annotated", [False, True], ids=["lightweight", "annotated"])
def test_moved_tag_is_updated_by_fetch(
    remote: Remote, controller_path: Path, annotated: bool
) -> None:
    remote.tag("release", annotated=annotated)
    remote.push()
    repo = DulwichSourceRepo(str(controller_path), url=remote.url)
    assert repo.resolve("release") == remote.first
    second = remote.commit({"fix.txt": "fix\n"}, "hotfix")
    remote.tag("release", second, annotated=annotated)
    remote.git(remote.work, "push", "-q", "origin", "main")
    remote.git(remote.work, "push", "-q", "--force", "origin", "release")
    repo.fetch()
    assert repo.resolve("release") == second
    assert remote.git(controller_path, "rev-parse", "release^{commit}") == second


def test_fetch_failure_when_remote_is_gone(remote: Remote, controller_path: Path) -> None:
    repo = DulwichSourceRepo(str(controller_path), url=remote.url)
    repo.fetch()
    shutil.rmtree(remote.bare)
    with pytest.raises(FetchFailed, match="fetching the controller repository"):
        repo.fetch()
    assert repo.current_commit() == remote.first


def test_fetch_without_configured_remote(remote: Remote, controller_path: Path) -> None:
    repo = DulwichSourceRepo(str(controller_path), url=remote.url, remote_name="upstream")
    repo.fetch()
    remote.git(controller_path, "remote", "remove", "upstream")
    with pytest.raises(FetchFailed, match="no remote 'upstream'"):
        repo.fetch()
