"""What a fresh clone's configuration, refs and HEAD look like, however its objects came.

Both clones (:mod:`.local_clone`, objects copied from this machine; :mod:`.network_clone`,
one pack from a server) end here, so they leave the repository ``porcelain.clone`` left: the
remote configured as ``<remote>`` with the usual fetch refspec, its branches as
``refs/remotes/<remote>/*``, its tags as ``refs/tags/*``, HEAD on a local branch tracking the
remote's default one (detached at the remote's HEAD when that is detached), and the work
tree that commit's tree.

Branches and tags are written as one ``packed-refs`` file, as ``git clone`` writes them:
``porcelain.clone`` wrote each tag as its own file, locked, fsync'ed and with a reflog entry,
which cost 500 fsyncs, 500 reflog appends and 2,500 config reads for 500 tags (issue 14,
about two thirds of a network clone). As with ``git clone``, the tags get no reflog; HEAD
and the local branch keep theirs ("clone: from <url>", the URL without credentials). A tag
the next fetch moves or adds is a loose ref with a reflog again (:mod:`.fetching`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from dulwich.objects import ObjectID
from dulwich.refs import HEADREF, LOCAL_BRANCH_PREFIX, Ref
from dulwich.repo import Repo

from teg_ota.adapters.git.fetching import local_names

__all__ = ["configure_remote", "write_clone_refs"]

_FALLBACK_BRANCH = Ref(b"refs/heads/master")
"""What ``porcelain.clone`` checks out when the server names no default branch (Git's
historical default, as ``init.defaultBranch`` of a fresh repository is unset)."""


def configure_remote(repo: Repo, remote_name: str, url: str) -> None:
    """The remote ``remote_name`` at ``url`` (no credentials in it), fetching every branch."""
    config = repo.get_config()
    section = (b"remote", remote_name.encode("ascii"))
    config.set(section, b"url", url.encode("utf-8"))
    config.set(
        section, b"fetch", b"+refs/heads/*:refs/remotes/" + remote_name.encode("ascii") + b"/*"
    )
    config.write_to_path()


def write_clone_refs(
    repo: Repo,
    remote_name: str,
    remote_refs: Mapping[Ref, ObjectID],
    head_branch: Ref | None,
    message: bytes,
) -> None:
    """Write the refs of the remote's ``remote_refs`` (its objects already in ``repo``) as
    one ``packed-refs`` file, then HEAD and the work tree (module docstring).
    ``head_branch`` is the branch the remote's HEAD names, ``None`` when it names none."""
    repo.refs.add_packed_refs(dict(local_names(remote_name, remote_refs)))
    head_sha = remote_refs.get(HEADREF)
    if head_branch is None and head_sha is None and _FALLBACK_BRANCH in remote_refs:
        head_branch = _FALLBACK_BRANCH
    if head_branch is not None and head_branch.startswith(LOCAL_BRANCH_PREFIX):
        sha = remote_refs.get(head_branch)
        if sha is None:
            return  # the remote's default branch has no commit yet: nothing to check out
        _track(repo, remote_name, head_branch, sha, message)
    elif head_sha is not None:
        repo.refs.set_if_equals(HEADREF, None, head_sha, message=message)
    else:
        return
    repo.get_worktree().reset_index()


def _track(repo: Repo, remote_name: str, head_branch: Ref, sha: ObjectID, message: bytes) -> None:
    """HEAD on the local ``head_branch`` at ``sha``, tracking the remote's branch."""
    short = head_branch[len(LOCAL_BRANCH_PREFIX) :]
    remote = remote_name.encode("ascii")
    # packed-refs holds the branches, so the directory for the loose symref is missing.
    os.makedirs(os.path.join(repo.controldir(), "refs", "remotes", remote_name), exist_ok=True)
    repo.refs.set_symbolic_ref(
        Ref(b"refs/remotes/" + remote + b"/HEAD"), Ref(b"refs/remotes/" + remote + b"/" + short)
    )
    repo.refs.set_if_equals(head_branch, None, sha, message=message)
    repo.refs.set_symbolic_ref(HEADREF, head_branch, message=message)
    config = repo.get_config()
    config.set((b"branch", short), b"remote", remote)
    config.set((b"branch", short), b"merge", head_branch)
    config.write_to_path()
