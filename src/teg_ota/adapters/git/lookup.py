"""Finding the commit a version names, with nothing but exact lookups.

Only ``refs/tags/<tag>`` or a full 40-hex object id is ever looked up (both validated by
:func:`teg_ota.domain.model.versions.parse_version` before): no revision expressions, no
branches, no symbolic refs, so a version from the network can name nothing else.
"""

from __future__ import annotations

import re

from dulwich.objects import Commit, ObjectID, ShaFile, Tag
from dulwich.refs import LOCAL_TAG_PREFIX, Ref
from dulwich.repo import Repo

__all__ = ["commit_by_hash", "peel_to_commit", "tag_target"]

_HEX40_RE = re.compile(rb"[0-9a-f]{40}")
_MAX_TAG_DEPTH = 16
"""Tags of tags are followed this deep; a cycle cannot be built, but a hostile depth can."""


def commit_by_hash(repo: Repo, hex_sha: str) -> Commit | None:
    """The commit with this full hash; ``None`` for no object, or one that is not a commit."""
    sha = ObjectID(hex_sha.lower().encode("ascii"))
    if sha not in repo.object_store:
        return None
    obj = repo.object_store[sha]
    return obj if isinstance(obj, Commit) else None


def tag_target(repo: Repo, tag: str) -> ObjectID | None:
    """The object ``refs/tags/<tag>`` holds, never following a symbolic ref."""
    name = Ref(LOCAL_TAG_PREFIX + tag.encode("ascii"))
    try:
        value = repo.refs.read_ref(name)
    except (OSError, ValueError):
        return None
    if value is None:
        return None
    value = value.strip()
    if not _HEX40_RE.fullmatch(value):
        return None  # a symbolic ref ("ref: refs/heads/...") is not a tag
    return ObjectID(value)


def peel_to_commit(repo: Repo, sha: ObjectID) -> Commit | None:
    """Follow (possibly nested) annotated tags to the commit, or None."""
    obj: ShaFile
    try:
        obj = repo.object_store[sha]
        for _ in range(_MAX_TAG_DEPTH):
            if not isinstance(obj, Tag):
                break
            obj = repo.object_store[obj.object[1]]
    except KeyError:
        return None
    return obj if isinstance(obj, Commit) else None
