"""DulwichSourceRepo resolving versions: every kind of tag and full hashes to the commit,
and everything else (unknown, not a commit, hostile input, a branch) refused.

Real repositories, the ``git`` CLI as fixture builder and oracle (git_remote.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from git_remote import Remote, make_remote

from teg_ota.adapters.git import DulwichSourceRepo
from teg_ota.ports.source_repo import ResetFailed, UnknownVersion

# ---------------------------------------------------------------------------- resolve


@dataclass
class Tagged:
    """A cloned controller repository with every kind of tag; shared, used read-only."""

    remote: Remote
    repo: DulwichSourceRepo
    path: Path


@pytest.fixture(scope="module")
def tagged(tmp_path_factory: pytest.TempPathFactory) -> Tagged:
    base = tmp_path_factory.mktemp("tagged")
    remote = make_remote(base)
    remote.second = remote.commit({"app.py": "print('v2')\n"}, "second")
    remote.tag("v2.0-annotated", annotated=True)
    remote.git(remote.work, "tag", "-a", "-m", "tag of a tag", "nested", "v2.0-annotated")
    remote.tag("release/1.0+build.5", remote.first)
    remote.git(remote.work, "tag", "tree-tag", "HEAD^{tree}")
    remote.push()
    path = base / "controller"
    repo = DulwichSourceRepo(str(path), url=remote.url)
    repo.fetch()
    return Tagged(remote, repo, path)


@pytest.mark.parametrize("tag", ["v1.0", "v2.0-annotated", "nested", "release/1.0+build.5"])
def test_tags_resolve_to_the_commit(tagged: Tagged, tag: str) -> None:
    resolved = tagged.repo.resolve(tag)
    assert resolved == tagged.remote.git(tagged.path, "rev-parse", f"refs/tags/{tag}^{{commit}}")
    assert len(resolved) == 40


def test_full_hash_resolves(tagged: Tagged) -> None:
    remote, repo = tagged.remote, tagged.repo
    second = remote.second
    assert repo.resolve(second) == second
    assert repo.resolve(second.upper()) == second
    assert repo.commit_exists(second)
    assert repo.commit_exists(remote.first)


def test_unknown_versions(tagged: Tagged) -> None:
    remote, repo, controller_path = tagged.remote, tagged.repo, tagged.path
    with pytest.raises(
        UnknownVersion,
        match=r"^unknown version 'v9\.9': no such tag or commit in the controller repository$",
    ):
        repo.resolve("v9.9")
    missing = "0123456789abcdef0123456789abcdef01234567"
    with pytest.raises(UnknownVersion, match="no such tag or commit"):
        repo.resolve(missing)
    assert not repo.commit_exists(missing)
    # Objects that exist but are not commits: a tree, a blob, an annotated tag object.
    tree = remote.git(controller_path, "rev-parse", "HEAD^{tree}")
    blob = remote.git(controller_path, "rev-parse", "HEAD:app.py")
    tag_object = remote.git(controller_path, "rev-parse", "refs/tags/v2.0-annotated")
    for sha in (tree, blob, tag_object):
        with pytest.raises(UnknownVersion):
            repo.resolve(sha)
        assert not repo.commit_exists(sha)
    with pytest.raises(UnknownVersion, match="does not name a commit"):
        repo.resolve("tree-tag")
    assert not repo.commit_exists("v1.0")  # a tag is not a commit hash
    assert not repo.commit_exists("--upload-pack=x")


@pytest.mark.parametrize(
    "hostile",
    [
        "--upload-pack=touch {marker}",
        "-c core.sshCommand=touch {marker}",
        "v1;touch {marker}",
        "$(touch {marker})",
        "`touch {marker}`",
        "v1;rm -rf /",
        "HEAD",
        "HEAD~1",
        "HEAD^",
        "v1.0^{commit}",
        "v1.0~1",
        "main",
        "origin/main",
        "refs/heads/main",
        "refs/tags/v1.0",
        "../../etc",
        "../../etc/passwd",
        "/etc/passwd",
        "abc1234",
        "@{-1}",
        "v1.0\nmain",
        "",
    ],
)
def test_hostile_inputs_are_unknown_versions(tagged: Tagged, tmp_path: Path, hostile: str) -> None:
    repo = tagged.repo
    marker = tmp_path / "pwned"
    value = hostile.replace("{marker}", str(marker))
    with pytest.raises(UnknownVersion):
        repo.resolve(value)
    assert not repo.commit_exists(value)
    with pytest.raises(ResetFailed):
        repo.reset_to(value)
    assert not marker.exists()
    assert Path("/etc/passwd").exists()


def test_branch_named_like_a_tag_is_not_used(remote: Remote, controller_path: Path) -> None:
    remote.git(remote.work, "branch", "v3.0")
    remote.git(remote.work, "push", "-q", "origin", "v3.0")
    repo = DulwichSourceRepo(str(controller_path), url=remote.url)
    repo.fetch()
    with pytest.raises(UnknownVersion):
        repo.resolve("v3.0")
