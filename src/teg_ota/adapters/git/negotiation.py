"""What a network fetch tells the server the clone already has: its branch tips, not its history.

dulwich's default negotiation (``Repo.get_graph_walker``) starts from ``refs/heads/*`` only and
walks their whole history, one commit read per ``have`` line. For this adapter that is wrong
twice over (issue 14): ``refs/heads/main`` is the branch the first clone checked out and never
moves (fetches move ``refs/remotes/<remote>/*``, the work tree is a detached HEAD), so what
was fetched since the clone is never offered and the server sends it again; and over protocol
v2 (``git://``, SSH) dulwich sends every ``have`` before it reads an answer, so one new commit
in a 2,000-commit history costs 2,000 commit reads and 2,000 lines.

Here the ``have`` lines are the commits HEAD (the deployed version), the remote-tracking
branches (what the last fetch brought) and the local branches point at, each once, and
nothing older. The server leaves out everything reachable from any of them it knows: after
the usual fetch, everything the clone holds. Tags are not offered: reading 500 tag objects
to peel them cost more than the rest of the fetch, and a tag's commit is on a branch the
server knows except after the remote rewrote that branch. A tip the server does not know
(a rewritten branch) costs at most a larger pack, never a wrong one: the pack still holds
everything the wanted refs reach that the server was not told about, and dulwich checks it
as it indexes it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import cast

from dulwich.objects import Commit, ObjectID, Tag
from dulwich.refs import HEADREF, LOCAL_BRANCH_PREFIX, Ref
from dulwich.repo import Repo

__all__ = ["TipsWalker", "negotiating_with_tips", "ref_tips"]

_REMOTES_PREFIX = b"refs/remotes/"
_MAX_TAG_DEPTH = 8
"""Tags of tags followed at most (a cycle cannot exist, a chain this long is not a release)."""


def ref_tips(repo: Repo, refs: Mapping[Ref, ObjectID]) -> list[ObjectID]:
    """The commits HEAD, then the remote-tracking and the local branches among ``refs``
    (``repo``'s refs) point at, each once; a ref whose object is missing is left out."""
    try:
        head: ObjectID | None = repo.refs[HEADREF]
    except KeyError:
        head = None
    remote = [sha for name, sha in refs.items() if name.startswith(_REMOTES_PREFIX)]
    local = [sha for name, sha in refs.items() if name.startswith(LOCAL_BRANCH_PREFIX)]
    tips: dict[ObjectID, None] = {}  # ordered, each once
    looked_at: set[ObjectID] = set()
    for sha in ([head] if head is not None else []) + remote + local:
        if sha in looked_at:
            continue
        looked_at.add(sha)
        commit = _commit_of(repo, sha)
        if commit is not None:
            tips.setdefault(commit)
    return list(tips)


def _commit_of(repo: Repo, sha: ObjectID) -> ObjectID | None:
    """The commit ``sha`` names, through any tags (a ref may name a tag); the tagged commit
    itself is not read, as a tag says its target's type."""
    store = repo.object_store
    for _ in range(_MAX_TAG_DEPTH):
        try:
            obj = store[sha]
        except KeyError:
            return None  # missing: nothing to offer
        if isinstance(obj, Commit):
            return sha
        if not isinstance(obj, Tag):
            return None  # a tree or a blob
        target_type, target = obj.object
        if target_type is Commit:
            return target  # present: a tag only ever arrives with what it reaches
        sha = target
    return None


class TipsWalker:
    """The graph walker dulwich's client negotiates with: ``find_tips()`` (found when the
    first ``have`` is due) in order, never a parent. The server's acknowledgements need no
    bookkeeping, as nothing older is offered."""

    def __init__(
        self,
        find_tips: Callable[[], list[ObjectID]],
        shallow: set[ObjectID],
        update_shallow: Callable[[set[ObjectID] | None, set[ObjectID] | None], None],
    ) -> None:
        self._tips: Iterator[ObjectID] | None = None
        self._find_tips = find_tips
        self.shallow = shallow
        self.update_shallow = update_shallow

    def ack(self, sha: ObjectID) -> None:
        """The server has ``sha``: nothing to do, no parent of it will be offered."""

    def nak(self) -> None:
        """The server has none of the tips: it sends everything the wants reach."""

    def next(self) -> ObjectID | None:
        if self._tips is None:  # only now: a fetch with nothing to ask for never gets here
            self._tips = iter(self._find_tips())
        return next(self._tips, None)

    __next__ = next


class _TipsTarget:
    """``repo`` as dulwich's ``GitClient.fetch`` sees it (it asks its target for the graph
    walker), negotiating with a :class:`TipsWalker`; everything else is ``repo``'s own."""

    def __init__(self, repo: Repo, walker: TipsWalker) -> None:
        self._repo = repo
        self._walker = walker

    def get_graph_walker(self, heads: list[ObjectID] | None = None) -> TipsWalker:
        return self._walker

    def __getattr__(self, name: str) -> object:
        return getattr(self._repo, name)


def negotiating_with_tips(repo: Repo, refs: Callable[[], Mapping[Ref, ObjectID]]) -> Repo:
    """``repo`` for ``GitClient.fetch(path, target=...)``: the same repository, offering the
    server only :func:`ref_tips` of ``refs()`` (``repo``'s refs, read when first needed)."""
    walker = TipsWalker(lambda: ref_tips(repo, refs()), repo.get_shallow(), repo.update_shallow)
    return cast(Repo, _TipsTarget(repo, walker))
