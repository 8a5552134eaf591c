"""The work tree made exactly one commit, the way ``git checkout -f <c> && git reset --hard <c>
&& git clean -fdx`` would: the image is built from it, so nothing a crashed build, an
operator or an older version left may end up in it.

Symlinks are removed, never followed (a link to outside the tree must not be written
through); the top-level ``.git`` is never touched; gitlinks are left alone. HEAD is written
atomically, so a crash never leaves a repository without one.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable

from dulwich import porcelain
from dulwich.file import GitFile
from dulwich.index import Index
from dulwich.objects import Commit, ObjectID
from dulwich.refs import HEADREF, DiskRefsContainer
from dulwich.repo import Repo
from loguru import logger

__all__ = ["clean_untracked", "detach_head", "remove_entry", "reset_worktree"]

_GITLINK_MODE = 0o160000


def reset_worktree(repo: Repo, worktree: str, target: Commit) -> None:
    """Detached HEAD at ``target``; index and files of ``worktree`` (``repo``'s) exactly its
    tree, nothing else.

    Raises whatever dulwich or the OS raise: the caller knows the URLs to scrub from it.
    """
    # Clean first so untracked files and directories cannot obstruct the checkout, then
    # reset (HEAD already detached, so no branch moves), then clean again with the new
    # index (removes directories emptied by the reset).
    clean_untracked(repo, worktree)
    detach_head(repo)
    porcelain.reset(repo, "hard", target)
    clean_untracked(repo, worktree)
    detach_head(repo, target.id)


def detach_head(repo: Repo, sha: ObjectID | None = None) -> None:
    """Point HEAD directly at ``sha`` (default: its current commit), atomically.

    ``porcelain.update_head(detached=True)`` deletes HEAD and writes it again, so a
    crash in between leaves no HEAD; writing HEAD through a lock file and a rename
    never does. A HEAD that names no commit (empty repository) is left alone.
    """
    if sha is None:
        try:
            sha = repo.refs[HEADREF]
        except KeyError:
            return
    refs = repo.refs
    if isinstance(refs, DiskRefsContainer):
        with GitFile(refs.refpath(HEADREF), "wb") as f:
            f.write(sha + b"\n")
    else:  # pragma: no cover - reftable or other ref backends
        del refs[HEADREF]
        refs[HEADREF] = sha


def clean_untracked(repo: Repo, worktree: str) -> None:
    """``git clean -ffdx`` in ``worktree``: remove every path ``repo``'s index does not track,
    ignored or not.

    Directories with no tracked file below them go entirely; gitlinks are left alone.
    """
    index: Index = repo.open_index()
    tracked: set[bytes] = set()
    tracked_dirs: set[bytes] = set()
    gitlinks: set[bytes] = set()
    for path, entry in index.items():
        tracked.add(path)
        mode = getattr(entry, "mode", None)
        if mode is not None and stat.S_IFMT(mode) == _GITLINK_MODE:
            gitlinks.add(path)
        parent = path.rpartition(b"/")[0]
        while parent and parent not in tracked_dirs:
            tracked_dirs.add(parent)
            parent = parent.rpartition(b"/")[0]
    removed = _clean_dir(os.fsencode(worktree), b"", tracked, tracked_dirs, gitlinks)
    if removed:
        logger.debug("removed {} untracked paths from {}", removed, worktree)


def _clean_dir(
    root: bytes,
    rel: bytes,
    tracked: set[bytes],
    tracked_dirs: set[bytes],
    gitlinks: set[bytes],
) -> int:
    """Remove untracked entries below ``root/rel``; return how many were removed."""
    removed = 0
    directory = os.path.join(root, rel) if rel else root
    with os.scandir(directory) as entries:
        listing = list(entries)
    for entry in listing:
        name = entry.name
        child = rel + b"/" + name if rel else name
        if not rel and name == b".git":
            continue
        if entry.is_dir(follow_symlinks=False):
            if child in gitlinks:
                continue
            if child in tracked_dirs:
                removed += _clean_dir(root, child, tracked, tracked_dirs, gitlinks)
                continue
        elif child in tracked:
            continue
        remove_entry(entry.path)
        removed += 1
    return removed


def remove_entry(path: str | bytes) -> None:
    """Delete a file, symlink or directory tree without following symlinks."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, onerror=_make_writable_and_retry)
    else:
        os.unlink(path)


def _make_writable_and_retry(
    func: Callable[..., object], path: str | bytes, _exc_info: object
) -> None:
    """``shutil.rmtree`` error hook: a read-only directory blocks deleting its entries."""
    parent = os.path.dirname(path)
    if parent:
        os.chmod(parent, stat.S_IRWXU)
    if func is not os.rmdir and os.path.isdir(path) and not os.path.islink(path):
        os.chmod(path, stat.S_IRWXU)
    func(path)
