"""DulwichSourceRepo's work tree: HEAD, and ``reset_to`` making the tree exactly a commit
(``checkout -f``, ``reset --hard``, ``clean -fdx``) whatever mess it starts from.

Real repositories, the ``git`` CLI as fixture builder and oracle (git_remote.py).
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
from git_remote import Remote, tree_files

from teg_ota.adapters.git import DulwichSourceRepo
from teg_ota.ports.source_repo import ResetFailed

# ---------------------------------------------------------------------------- reset_to / HEAD


def test_current_commit_of_an_empty_repository(remote: Remote, controller_path: Path) -> None:
    remote.git(remote.work.parent, "init", "-q", str(controller_path))
    repo = DulwichSourceRepo(str(controller_path))
    assert repo.current_commit() is None


def test_reset_to_makes_the_work_tree_exactly_the_commit(
    remote: Remote, controller_path: Path, tmp_path: Path
) -> None:
    git = remote.git
    old = remote.commit(
        {
            ".gitignore": "*.log\nbuild/\n",
            "keep.txt": "old keep\n",
            "old_only.txt": "gone in new\n",
            "olddir/deep/file.txt": "whole dir gone in new\n",
            "dir/sub.txt": "sub\n",
            "run.sh": "#!/bin/sh\necho old\n",
        },
        "old",
    )
    (remote.work / "run.sh").chmod(0o755)
    (remote.work / "old_only.txt").unlink()
    shutil.rmtree(remote.work / "olddir")
    (remote.work / "link").symlink_to("dir/sub.txt")
    new = remote.commit({"keep.txt": "new keep\n", "dir/new.txt": "new\n"}, "new")
    remote.tag("v2.0")
    remote.push()

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "sentinel").write_text("must survive")

    repo = DulwichSourceRepo(str(controller_path), url=remote.url)
    repo.reset_to(old)
    assert repo.current_commit() == old
    assert (controller_path / "old_only.txt").exists()
    assert git(controller_path, "status", "--porcelain", "--ignored") == ""

    # Make a mess: modified, untracked, ignored, nested, symlinked, read-only.
    (controller_path / "keep.txt").write_text("locally modified\n")
    (controller_path / "run.sh").chmod(0o644)
    (controller_path / "untracked.txt").write_text("x")
    (controller_path / "app.log").write_text("ignored")
    (controller_path / "build" / "obj").mkdir(parents=True)
    (controller_path / "build" / "obj" / "a.o").write_text("ignored dir")
    (controller_path / "dir" / "extra" / "deeper").mkdir(parents=True)
    (controller_path / "dir" / "extra" / "deeper" / "f").write_text("untracked in tracked dir")
    (controller_path / "dir" / "debug.log").write_text("ignored in tracked dir")
    (controller_path / "empty" / "nested").mkdir(parents=True)
    (controller_path / "escape").symlink_to(outside, target_is_directory=True)
    (controller_path / "dir" / "escape-file").symlink_to(outside / "sentinel")
    (controller_path / "olddir" / "deep" / "junk.log").write_text("ignored next to tracked")
    nested_repo = controller_path / "vendored"
    git(controller_path, "init", "-q", str(nested_repo))
    readonly = controller_path / "ro"
    (readonly / "inner").mkdir(parents=True)
    (readonly / "inner" / "f").write_text("x")
    (readonly / "inner").chmod(stat.S_IRUSR | stat.S_IXUSR)
    (controller_path / "dir" / "new.txt" / "obstacle").mkdir(parents=True)  # dir where a file goes

    repo.reset_to(new)

    assert git(controller_path, "status", "--porcelain", "--ignored", "--untracked-files=all") == ""
    assert git(controller_path, "rev-parse", "HEAD") == new
    assert git(controller_path, "symbolic-ref", "-q", "HEAD", check=False) == ""  # detached
    # reset_to(old) above detached HEAD instead of moving the clone's branch back.
    assert git(controller_path, "rev-parse", "refs/heads/main") == new
    assert repo.current_commit() == new
    assert (
        tree_files(controller_path)
        == set(git(controller_path, "ls-files").splitlines())
        == {
            ".gitignore",
            "README",
            "app.py",
            "keep.txt",
            "dir/sub.txt",
            "dir/new.txt",
            "run.sh",
            "link",
        }
    )
    assert (controller_path / "keep.txt").read_text() == "new keep\n"
    assert os.access(controller_path / "run.sh", os.X_OK)
    assert os.readlink(controller_path / "link") == "dir/sub.txt"
    assert (controller_path / ".git").is_dir()
    assert (outside / "sentinel").read_text() == "must survive"
    assert git(controller_path, "fsck", "--no-progress") == ""

    # And back again: files tracked in the current commit but not in the target go, and an
    # untracked file where the target has a tracked one is replaced.
    (controller_path / "old_only.txt").write_text("untracked junk\n")
    (controller_path / "olddir").symlink_to(outside, target_is_directory=True)
    repo.reset_to(old)
    assert git(controller_path, "status", "--porcelain", "--ignored") == ""
    assert git(controller_path, "rev-parse", "HEAD") == old
    assert (controller_path / "old_only.txt").read_text() == "gone in new\n"
    assert not (controller_path / "dir" / "new.txt").exists()
    assert not (controller_path / "link").exists()
    assert (controller_path / "run.sh").read_text() == "#!/bin/sh\necho old\n"
    assert not (controller_path / "olddir").is_symlink()
    assert (controller_path / "olddir" / "deep" / "file.txt").is_file()
    assert sorted(p.name for p in outside.iterdir()) == ["sentinel"]  # nothing written through
    assert git(controller_path, "rev-parse", "refs/heads/main") == new


def test_reset_to_unknown_commit_fails_and_keeps_state(
    remote: Remote, controller_path: Path
) -> None:
    repo = DulwichSourceRepo(str(controller_path), url=remote.url)
    before = repo.current_commit()
    with pytest.raises(ResetFailed, match="no such commit"):
        repo.reset_to("0123456789abcdef0123456789abcdef01234567")
    with pytest.raises(ResetFailed, match="full commit hash"):
        repo.reset_to("v1.0")
    assert repo.current_commit() == before
    assert remote.git(controller_path, "status", "--porcelain", "--ignored") == ""
