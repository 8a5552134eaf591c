"""The first clone from a server (HTTP(S), SSH, ``git://``), without a write per tag.

``porcelain.clone`` over ``git://`` took about 10x ``git clone`` for 2,000 commits and 500
tags (issue 14), two thirds of it writing the refs: each tag its own locked, fsync'ed file
with a reflog entry. Here the pack comes from dulwich's client exactly as before (it asks for
every branch and tag tip and the remote's HEAD; dulwich checks the pack as it indexes it, so
every object is named by its own hash), and the refs, HEAD and work tree are written as for
every clone (:mod:`.cloned_refs`: one ``packed-refs`` file, as ``git clone`` writes it).
"""

from __future__ import annotations

from collections.abc import Mapping

from dulwich.objects import ObjectID
from dulwich.refs import HEADREF, Ref
from dulwich.repo import Repo

from teg_ota.adapters.git.cloned_refs import configure_remote, write_clone_refs
from teg_ota.adapters.git.fetching import network_transport, wanted

__all__ = ["clone_network"]


def clone_network(
    path: str,
    url: str,
    remote_name: str,
    message: bytes,
    username: str | None = None,
    password: str | None = None,
) -> Repo:
    """Clone ``url`` (without credentials; they go to the transport only) into the existing
    empty directory ``path``. The caller removes a partial clone."""
    repo = Repo.init(path, mkdir=False)
    try:
        configure_remote(repo, remote_name, url)
        client, remote_path = network_transport(repo, url, username, password)

        def determine_wants(
            refs: Mapping[Ref, ObjectID], depth: int | None = None
        ) -> list[ObjectID]:
            wants = wanted(repo, refs)
            head = refs.get(HEADREF)
            if head is not None and head not in wants and head not in repo.object_store:
                wants.append(head)  # a detached HEAD no branch or tag holds
            return wants

        result = client.fetch(remote_path.encode("utf-8"), repo, determine_wants=determine_wants)
        remote_refs = {n: s for n, s in result.refs.items() if s is not None}
        head_branch = result.symrefs.get(HEADREF)
        write_clone_refs(repo, remote_name, remote_refs, head_branch, message)
    except BaseException:
        repo.close()
        raise
    return repo
