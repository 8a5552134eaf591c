"""One fetch from the configured remote that costs what changed, not what the history holds.

Issue 14 measured dulwich's ``porcelain.fetch`` at 3.7x ``git fetch`` for one new commit in
a 2,000-commit / 500-tag repository: it asks for every ref and rewrites every ref (a lock,
a write and a reflog entry per tag), changed or not, and for a remote on this machine it
walks the whole local history. Here:

* only refs whose object the clone lacks are asked for (none: no pack is negotiated);
* only refs whose value changed are written, with the same reflog message as before;
* a remote on this machine is read directly (:mod:`.local_remote`), a network remote
  through dulwich's client with those wants, offering the server the clone's branch tips
  rather than its whole history (:mod:`.negotiation`).

The refs land where ``porcelain.fetch`` put them: ``refs/heads/*`` as
``refs/remotes/<remote>/*``, ``refs/tags/*`` as ``refs/tags/*``, set unconditionally (a tag
that moved on the remote moves here, the moved-tag policy then decides), nothing pruned.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from dulwich.client import GitClient, get_transport_and_path
from dulwich.gc import maybe_auto_gc
from dulwich.objects import ObjectID
from dulwich.protocol import PEELED_TAG_SUFFIX
from dulwich.refs import LOCAL_BRANCH_PREFIX, LOCAL_TAG_PREFIX, DiskRefsContainer, Ref
from dulwich.repo import Repo

from teg_ota.adapters.git.local_remote import copy_missing, local_remote_dir
from teg_ota.adapters.git.negotiation import negotiating_with_tips

__all__ = [
    "Fetched",
    "branches_and_tags",
    "fetch_changed",
    "local_names",
    "network_transport",
    "wanted",
]

_HEX40_RE = re.compile(rb"[0-9a-f]{40}")


@dataclass(frozen=True, slots=True)
class Fetched:
    """What a fetch found: how many tags the remote has, how many refs it wrote."""

    tags: int
    refs_written: int


def fetch_changed(
    repo: Repo,
    remote_name: str,
    remote_url: str,
    message: bytes,
    username: str | None = None,
    password: str | None = None,
) -> Fetched:
    """Fetch from ``remote_url`` (the remote ``remote_name``'s URL, without credentials)
    into ``repo``; raise whatever the transport or dulwich raise (the caller scrubs it)."""
    source_dir = local_remote_dir(remote_url)
    if source_dir is not None:
        with Repo(source_dir) as source:
            remote_refs = branches_and_tags(source)
            wants = wanted(repo, remote_refs)
            # A remote ref naming an object the remote lacks is left out, as dulwich does.
            broken = {sha for sha in wants if sha not in source.object_store}
            remote_refs = {n: s for n, s in remote_refs.items() if s not in broken}
            copy_missing(source, repo, [sha for sha in wants if sha not in broken])
    else:
        client, path = network_transport(repo, remote_url, username, password)

        def determine_wants(
            refs: Mapping[Ref, ObjectID], depth: int | None = None
        ) -> list[ObjectID]:
            return wanted(repo, refs)

        # The clone's branch tips as the "have" lines, not its history (:mod:`.negotiation`).
        target = negotiating_with_tips(repo, lambda: branches_and_tags(repo))
        result = client.fetch(path.encode(), target, determine_wants=determine_wants)
        remote_refs = {n: s for n, s in result.refs.items() if s is not None}
    written = import_changed(repo, remote_name, remote_refs, message)
    maybe_auto_gc(repo)
    tags = sum(
        1 for name in local_names(remote_name, remote_refs) if name.startswith(LOCAL_TAG_PREFIX)
    )
    return Fetched(tags=tags, refs_written=written)


def network_transport(
    repo: Repo, url: str, username: str | None, password: str | None
) -> tuple[GitClient, str]:
    """dulwich's client for ``url`` (without credentials; they are passed apart), configured
    from ``repo``'s config stack, and the repository's path on the server."""
    ssh_command = os.environ.get("GIT_SSH_COMMAND") or os.environ.get("GIT_SSH") or None
    return get_transport_and_path(
        url,
        config=repo.get_config_stack(),
        quiet=True,
        username=username,
        password=password,
        ssh_command=ssh_command,
    )


def local_names(remote_name: str, remote_refs: Mapping[Ref, ObjectID]) -> dict[Ref, ObjectID]:
    """The local ref each remote branch and tag is kept as, with its value (peeled
    ``^{}`` entries and other refs left out)."""
    remotes = b"refs/remotes/" + remote_name.encode("ascii") + b"/"
    names: dict[Ref, ObjectID] = {}
    for name, sha in remote_refs.items():
        if name.endswith(PEELED_TAG_SUFFIX):
            continue
        if name.startswith(LOCAL_BRANCH_PREFIX):
            names[Ref(remotes + name[len(LOCAL_BRANCH_PREFIX) :])] = sha
        elif name.startswith(LOCAL_TAG_PREFIX):
            names[name] = sha
    return names


def wanted(repo: Repo, remote_refs: Mapping[Ref, ObjectID]) -> list[ObjectID]:
    """The branch and tag tips ``repo`` lacks: all a fetch needs to ask for."""
    store = repo.object_store
    tips = {
        sha
        for name, sha in remote_refs.items()
        if name.startswith((LOCAL_BRANCH_PREFIX, LOCAL_TAG_PREFIX))
        and not name.endswith(PEELED_TAG_SUFFIX)
    }
    return sorted(sha for sha in tips if sha not in store)


def import_changed(
    repo: Repo, remote_name: str, remote_refs: Mapping[Ref, ObjectID], message: bytes
) -> int:
    """Set the local refs whose value differs from the remote's; how many were written."""
    current = branches_and_tags(repo)
    written = 0
    for name, sha in local_names(remote_name, remote_refs).items():
        if current.get(name) == sha:
            continue
        repo.refs.set_if_equals(name, None, sha, message=message)
        written += 1
    return written


def branches_and_tags(repo: Repo) -> dict[Ref, ObjectID]:
    """Every ref under ``refs/`` that holds an object id (symbolic refs left out): the
    ``packed-refs`` file, then the loose files, which win.

    One directory walk and one read per loose ref, where ``RefsContainer.as_dict`` tries
    to open a loose file for each of the 500 packed tags too.
    """
    refs = repo.refs
    if not isinstance(refs, DiskRefsContainer):  # pragma: no cover - other ref backends
        return {n: s for n, s in refs.as_dict().items() if n.startswith(b"refs/")}
    found: dict[Ref, ObjectID] = {
        n: s for n, s in refs.get_packed_refs().items() if not n.endswith(PEELED_TAG_SUFFIX)
    }
    top = os.path.join(os.fsencode(repo.controldir()), b"refs")
    for directory, _dirs, files in os.walk(top):
        for file_name in files:
            if file_name.endswith(b".lock"):
                continue
            path = os.path.join(directory, file_name)
            try:
                with open(path, "rb") as f:
                    value = f.read(128).strip()
            except OSError:
                continue  # deleted meanwhile
            if _HEX40_RE.fullmatch(value):
                relative = os.path.relpath(path, top).replace(os.fsencode(os.sep), b"/")
                found[Ref(b"refs/" + relative)] = ObjectID(value)
    return found
