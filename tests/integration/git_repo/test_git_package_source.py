"""GitPackageSource over DulwichSourceRepo against the sample controller repository
(controller_repo.py): what the domain gets from Git once it only speaks ``PackageSource``.

``resolve`` must fetch every time (a tag may have moved) and tell a transient failure
(FetchFailed: the caller may use an image it built before) from a version the repository
does not know (UnknownVersion); ``stage`` must hand over a directory that is exactly the
resolved commit, since the image is built from it and labelled with that commit.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from controller_repo import ControllerRepo, git, make_controller_repo
from git_remote import tree_files

from teg_ota.adapters.git import DulwichSourceRepo, GitPackageSource
from teg_ota.domain.model.versions import parse_version
from teg_ota.ports.package_source import (
    BuildContext,
    FetchFailed,
    PackageRef,
    PackageSource,
    ResetFailed,
    UnknownVersion,
)

MISSING_COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def controller(tmp_path: Path) -> ControllerRepo:
    return make_controller_repo(tmp_path / "sample")


@pytest.fixture
def worktree(tmp_path: Path) -> Path:
    return tmp_path / "controller"


@pytest.fixture
def source(controller: ControllerRepo, worktree: Path) -> GitPackageSource:
    return GitPackageSource(DulwichSourceRepo(str(worktree), url=controller.url))


def package(version: str) -> PackageRef:
    return PackageRef(version=parse_version(version), title="teg-controller")


def commit_files(controller: ControllerRepo, commit: str) -> dict[str, str]:
    """Path -> content of every file ``commit`` holds, read with the ``git`` CLI (the oracle)."""
    names = git("ls-tree", "-r", "--name-only", commit, cwd=controller.work).splitlines()
    return {name: git("show", f"{commit}:{name}", cwd=controller.work) for name in names}


def assert_holds_exactly(directory: Path, controller: ControllerRepo, commit: str) -> None:
    expected = commit_files(controller, commit)
    assert tree_files(directory) == set(expected)
    for name, content in expected.items():
        # ``git show`` output is stripped by the helper; the files end with a newline.
        assert (directory / name).read_text().rstrip("\n") == content


def test_is_a_package_source_and_construction_touches_nothing(tmp_path: Path) -> None:
    path = tmp_path / "controller"
    repo = DulwichSourceRepo(str(path), url="https://deploy:s3cret@git.example.invalid/c.git")
    port: PackageSource = GitPackageSource(repo)  # structural typing, checked by mypy
    assert not path.exists()
    assert "s3cret" not in repr(port)
    assert "git.example.invalid" in repr(port)


@pytest.mark.parametrize("tag", ["v1.0", "v1.1"], ids=["lightweight", "annotated"])
def test_resolves_a_tag_to_its_commit(
    source: GitPackageSource, controller: ControllerRepo, tag: str
) -> None:
    assert source.resolve(package(tag)) == controller.commit_of(tag)


def test_resolves_a_full_commit(source: GitPackageSource, controller: ControllerRepo) -> None:
    commit = controller.add_commit("untagged")
    assert source.resolve(package(commit)) == commit
    assert source.resolve(package(commit.upper())) == commit


def test_resolve_fetches_first(source: GitPackageSource, controller: ControllerRepo) -> None:
    assert source.resolve(package("v1.0")) == controller.commit_of("v1.0")  # clones
    newer = controller.add_version("v4.0")
    assert source.resolve(package("v4.0")) == newer
    # A tag moved on the remote names the new commit at once.
    controller.tag("v1.0", newer)
    assert source.resolve(package("v1.0")) == newer


@pytest.mark.parametrize("version", ["v9.9", MISSING_COMMIT])
def test_unknown_version(source: GitPackageSource, version: str) -> None:
    with pytest.raises(UnknownVersion):
        source.resolve(package(version))


def test_unreachable_remote_is_fetch_failed(tmp_path: Path, worktree: Path) -> None:
    source = GitPackageSource(DulwichSourceRepo(str(worktree), url=str(tmp_path / "nowhere.git")))
    with pytest.raises(FetchFailed):
        source.resolve(package("v1.0"))
    assert not worktree.exists()


def test_remote_gone_after_the_clone_is_fetch_failed_even_for_a_known_version(
    source: GitPackageSource, controller: ControllerRepo
) -> None:
    source.resolve(package("v1.0"))
    shutil.rmtree(controller.remote)
    # The tag is known locally, but it may have moved: the caller must learn the fetch failed.
    with pytest.raises(FetchFailed):
        source.resolve(package("v1.0"))


def test_stage_is_a_build_context_holding_exactly_the_commit(
    source: GitPackageSource, controller: ControllerRepo, worktree: Path
) -> None:
    # A version with a file (and a directory) the others lack, to see it come and go.
    (controller.work / "extra").mkdir()
    (controller.work / "extra" / "notes.txt").write_text("only in v5.0\n")
    controller.add_version("v5.0")
    for tag in ("v5.0", "v1.0", "v2.0-broken", "v1.1"):
        digest = source.resolve(package(tag))
        (worktree / "left-by-a-build.log").write_text("junk")
        (worktree / "VERSION").write_text("locally modified\n")
        staged = source.stage(package(tag), digest)
        assert staged == BuildContext(directory=str(worktree))
        assert isinstance(staged, BuildContext)
        assert_holds_exactly(Path(staged.directory), controller, digest)
        assert (worktree / "VERSION").read_text() == f"{tag}\n"
        assert (worktree / "extra").exists() == (tag == "v5.0")
        source.release(staged)  # the work tree is the repository's: it stays as it is
        assert_holds_exactly(worktree, controller, digest)


def test_stage_of_an_unknown_commit_is_reset_failed(
    source: GitPackageSource, controller: ControllerRepo, worktree: Path
) -> None:
    source.stage(package("v1.0"), source.resolve(package("v1.0")))
    with pytest.raises(ResetFailed):
        source.stage(package(MISSING_COMMIT), MISSING_COMMIT)
    assert_holds_exactly(worktree, controller, controller.commit_of("v1.0"))
