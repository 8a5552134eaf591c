"""Objects from a remote on this machine (a ``file://`` URL or a path), copied directly.

For such a remote dulwich plays the server in Python: it walks every commit the clone
already has to work out what is missing, then reads the whole remote pack to find deltas,
so one new commit costs as much as the history (issue 14: 3.7x ``git fetch``). Here the walk
starts from the wanted tips and stops at the first object the clone already has, so a fetch
costs what is new; a first clone copies the remote's pack files as they are, the way ``git
clone`` of a local path does.

Both rely on what Git itself relies on: an object present in the clone has everything it
refers to present too (the clone's objects only ever arrive whole, from these functions or
from dulwich's fetch). Nothing here is verified less than by a transfer: every object keeps
its hash as its name, and the commit a version resolves to is read by that hash.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable

from dulwich.client import LocalGitClient, get_transport_and_path
from dulwich.object_store import DiskObjectStore
from dulwich.objects import Commit, ObjectID, ShaFile, Tag, Tree
from dulwich.repo import Repo

__all__ = ["copy_missing", "copy_packs", "local_remote_dir"]

_GITLINK_MODE = 0o160000


def local_remote_dir(url: str) -> str | None:
    """The directory of the remote ``url`` names when it is on this machine, else ``None``.

    dulwich's own choice of transport decides, so a path is local exactly when dulwich would
    have opened it in-process anyway.
    """
    try:
        client, path = get_transport_and_path(url)
    except ValueError:
        return None
    return path if isinstance(client, LocalGitClient) else None


def copy_missing(source: Repo, target: Repo, wants: Iterable[ObjectID]) -> int:
    """Copy every object reachable from ``wants`` that ``target`` lacks; how many were copied.

    The walk stops at any object ``target`` already has (its ancestry and content are there
    too); submodule commits (gitlinks) are not followed, as a clone never holds them.
    """
    store = target.object_store
    origin = source.object_store
    found: dict[ObjectID, ShaFile] = {}
    todo = [sha for sha in wants if sha not in store]
    while todo:
        sha = todo.pop()
        if sha in found or sha in store:
            continue
        obj = origin[sha]
        found[sha] = obj
        if isinstance(obj, Tag):
            todo.append(obj.object[1])
        elif isinstance(obj, Commit):
            todo.append(obj.tree)
            todo.extend(obj.parents)
        elif isinstance(obj, Tree):
            todo.extend(entry.sha for entry in obj.iteritems() if entry.mode != _GITLINK_MODE)
    if found:
        store.add_objects([(obj, None) for obj in found.values()])
    return len(found)


def copy_packs(source: Repo, target: Repo) -> bool:
    """Copy the remote's packs and loose objects into an empty ``target`` as they are; False
    (nothing copied) when the remote borrows objects from elsewhere (alternates), so the
    caller falls back to :func:`copy_missing`. Reopen ``target`` afterwards: a store that
    listed its packs before may not see the copied ones."""
    origin = source.object_store
    store = target.object_store
    if not isinstance(origin, DiskObjectStore) or not isinstance(store, DiskObjectStore):
        return False
    if os.path.exists(os.path.join(origin.path, "info", "alternates")):
        return False
    source_packs = os.path.join(origin.path, "pack")
    target_packs = os.path.join(store.path, "pack")
    os.makedirs(target_packs, exist_ok=True)
    names = sorted(os.listdir(source_packs)) if os.path.isdir(source_packs) else []
    for name in names:
        if not name.endswith(".pack"):
            continue
        index = name[: -len(".pack")] + ".idx"
        if index not in names:
            continue  # a pack still being written by the remote: its objects come below
        _copy_durably(os.path.join(source_packs, name), os.path.join(target_packs, name))
        # The index last: dulwich and git only see a pack once its index is there.
        _copy_durably(os.path.join(source_packs, index), os.path.join(target_packs, index))
    for prefix in os.listdir(origin.path):
        if len(prefix) != 2:
            continue
        loose = os.path.join(origin.path, prefix)
        os.makedirs(os.path.join(store.path, prefix), exist_ok=True)
        for name in os.listdir(loose):
            shutil.copyfile(os.path.join(loose, name), os.path.join(store.path, prefix, name))
    return True


def _copy_durably(source: str, target: str) -> None:
    """Copy under a temporary name, fsync, rename: a power cut never leaves a truncated
    pack or index under its real name (a truncated index would break every later read)."""
    partial = target + ".partial"
    shutil.copyfile(source, partial)
    fd = os.open(partial, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(partial, target)
