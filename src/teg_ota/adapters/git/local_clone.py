"""The first clone from a remote on this machine, at about the cost of ``git clone``.

``porcelain.clone`` from a local remote took about 10x ``git clone`` for 2,000 commits and
500 tags (issue 14): dulwich regenerates the remote's pack object by object in Python and
writes each tag as its own locked file with a reflog entry. Here the remote's packs are
copied as they are (:func:`.local_remote.copy_packs`), and the refs, HEAD and work tree are
written as for every clone (:mod:`.cloned_refs`: one ``packed-refs`` file, as ``git clone``
writes it). A remote elsewhere is cloned by :mod:`.network_clone`.
"""

from __future__ import annotations

from dulwich.refs import HEADREF
from dulwich.repo import Repo

from teg_ota.adapters.git.cloned_refs import configure_remote, write_clone_refs
from teg_ota.adapters.git.fetching import wanted
from teg_ota.adapters.git.local_remote import copy_missing, copy_packs

__all__ = ["clone_local"]


def clone_local(source_dir: str, path: str, url: str, remote_name: str, message: bytes) -> Repo:
    """Clone the repository at ``source_dir`` into the existing empty directory ``path``;
    ``url`` is what the remote is configured as. The caller removes a partial clone."""
    with Repo.init(path, mkdir=False) as empty:
        # The remote first: a clone killed during the copy leaves a repository the next
        # fetch completes (as porcelain.clone's did), not one without an origin.
        configure_remote(empty, remote_name, url)
    with Repo(source_dir) as source, Repo(path) as empty:
        copy_packs(source, empty)
    repo = Repo(path)  # opened after the copy, so it sees the copied packs
    try:
        with Repo(source_dir) as source:
            present = source.object_store
            remote_refs = {n: s for n, s in source.get_refs().items() if s in present}
            head_branch = source.refs.get_symrefs().get(HEADREF)
            head_sha = remote_refs.get(HEADREF)
            wants = wanted(repo, remote_refs)
            if head_sha is not None and head_sha not in repo.object_store:
                wants.append(head_sha)
            copy_missing(source, repo, wants)
        write_clone_refs(repo, remote_name, remote_refs, head_branch, message)
    except BaseException:
        repo.close()
        raise
    return repo
