"""SourceRepo adapter on dulwich: pure Python Git, no ``git`` binary, no subprocess, no shell.

The controller repository lives at ``CONTROLLER_GIT_PATH``. It is cloned lazily from ``url``
the first time it is needed, fetched from its configured remote (never from a bare URL:
dulwich then writes objects but no refs), and reset to a commit by :mod:`.worktree`.
Versions are validated by :func:`teg_ota.domain.model.versions.parse_version` before
:mod:`.lookup` looks them up exactly (no revision expressions, no branches).

Credentials in the URL reach the transport only, never a log line, an exception message or
``.git/`` (:mod:`.credentials` says how, and how an older clone is migrated).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

from dulwich.errors import NotGitRepository
from dulwich.refs import HEADREF
from dulwich.repo import Repo
from loguru import logger

from teg_ota.adapters.git.credentials import (
    credentials_for,
    describe,
    move_credentials_out,
    protect_config,
    redact_url,
    split_credentials,
)
from teg_ota.adapters.git.fetching import fetch_changed
from teg_ota.adapters.git.local_clone import clone_local
from teg_ota.adapters.git.local_remote import local_remote_dir
from teg_ota.adapters.git.lookup import commit_by_hash, peel_to_commit, tag_target
from teg_ota.adapters.git.network_clone import clone_network
from teg_ota.adapters.git.worktree import remove_entry, reset_worktree
from teg_ota.domain.model.errors import InvalidVersion
from teg_ota.domain.model.versions import VersionKind, parse_version
from teg_ota.ports.source_repo import FetchFailed, ResetFailed, SourceRepoError, UnknownVersion

__all__ = ["DulwichSourceRepo", "SourceRepoUnavailable"]


class SourceRepoUnavailable(SourceRepoError):
    """There is no repository at the configured path, and nothing to clone it from."""


class DulwichSourceRepo:
    """The controller's Git repository, handled with dulwich (implements ``SourceRepo``)."""

    def __init__(self, path: str, url: str | None = None, remote_name: str = "origin") -> None:
        if not remote_name or not re.fullmatch(r"[A-Za-z0-9._-]+", remote_name):
            raise ValueError(f"invalid remote name {remote_name!r}")
        self._path = os.path.abspath(path)
        self._url = url
        self._remote_name = remote_name
        self._kept_credentials_warned = False

    def __repr__(self) -> str:
        url = redact_url(self._url) if self._url else None
        return f"DulwichSourceRepo(path={self._path!r}, url={url!r})"

    @property
    def worktree(self) -> str:
        return self._path

    def fetch(self) -> None:
        """Fetch branches and tags from the configured remote; moved tags are updated."""
        if self._missing():
            self._open_or_clone().close()  # a fresh clone is as new as a fetch
            return
        with self._open() as repo:
            remote_url = self._remote_url(repo)
            shown = redact_url(remote_url) if remote_url else "?"
            logger.debug("fetching controller repository from {} ({})", self._remote_name, shown)
            if remote_url is None:
                raise FetchFailed(
                    f"cannot fetch the controller repository at {self._path}: "
                    f"no remote {self._remote_name!r} is configured"
                )
            username, password = credentials_for(self._url, remote_url)
            try:
                # Only what changed (:mod:`.fetching`); a tag that moved on the remote moves
                # here too. The reflog message names the URL without credentials.
                fetched = fetch_changed(
                    repo,
                    self._remote_name,
                    remote_url,
                    b"fetch: from " + redact_url(remote_url).encode("utf-8"),
                    username=username,
                    password=password,
                )
            except Exception as exc:  # noqa: BLE001 - any transport/protocol failure
                reason = describe(exc, remote_url, self._url)
                logger.debug("fetch from {} failed: {}", shown, reason)
                # "from None": the original exception's text may hold the credentials.
                raise FetchFailed(
                    f"fetching the controller repository from {shown} failed: {reason}"
                ) from None
        changed = f"{fetched.tags} tag refs, {fetched.refs_written} refs changed"
        logger.info("fetched controller repository from {} ({})", shown, changed)

    def resolve(self, tag_or_commit: str) -> str:
        """The commit a full hash or a tag (lightweight or annotated, peeled) names."""
        try:
            version = parse_version(tag_or_commit)
        except InvalidVersion as exc:
            raise UnknownVersion(str(exc)) from None
        unknown = UnknownVersion(
            f"unknown version {version.value!r}: no such tag or commit in the controller repository"
        )
        with self._open() as repo:
            if version.kind is VersionKind.COMMIT:
                commit = commit_by_hash(repo, version.value)
                if commit is None:
                    raise unknown
                logger.debug("version {} is a commit", version.value)
                return commit.id.decode("ascii")
            target = tag_target(repo, version.value)
            if target is None:
                raise unknown
            peeled = peel_to_commit(repo, target)
            if peeled is None:
                raise UnknownVersion(
                    f"version {version.value!r}: the tag does not name a commit in the "
                    "controller repository"
                )
            sha = peeled.id.decode("ascii")
            logger.debug("tag {} resolves to commit {}", version.value, sha)
            return sha

    def commit_exists(self, commit: str) -> bool:
        try:
            version = parse_version(commit)
        except InvalidVersion:
            return False
        if version.kind is not VersionKind.COMMIT:
            return False
        with self._open() as repo:
            return commit_by_hash(repo, version.value) is not None

    def current_commit(self) -> str | None:
        with self._open() as repo:
            try:
                head = repo.refs[HEADREF]
            except KeyError:
                return None
            peeled = peel_to_commit(repo, head)
            return peeled.id.decode("ascii") if peeled is not None else None

    def reset_to(self, commit: str) -> None:
        """Detached HEAD at ``commit``; index and files exactly the commit's tree, nothing else."""
        try:
            version = parse_version(commit)
        except InvalidVersion as exc:
            raise ResetFailed(str(exc)) from None
        if version.kind is not VersionKind.COMMIT:
            raise ResetFailed(f"reset_to needs a full commit hash, got tag {version.value!r}")
        with self._open() as repo:
            target = commit_by_hash(repo, version.value)
            if target is None:
                raise ResetFailed(
                    f"cannot reset the controller work tree to {version.value}: "
                    "no such commit in the repository"
                )
            logger.info("resetting controller work tree {} to {}", self._path, version.value)
            try:
                reset_worktree(repo, self._path, target)
            except Exception as exc:  # noqa: BLE001 - dulwich and OS failures alike
                reason = describe(exc, self._url)
                logger.debug("reset to {} failed: {}", version.value, reason)
                raise ResetFailed(
                    f"cannot reset the controller work tree to {version.value}: {reason}"
                ) from None
        logger.debug("controller work tree is at {}", version.value)

    # ------------------------------------------------------------------ repository access

    @contextmanager
    def _open(self) -> Iterator[Repo]:
        repo = self._open_or_clone()
        try:
            yield repo
        finally:
            repo.close()

    def _missing(self) -> bool:
        """No repository yet: the path is absent or an empty directory (a fresh volume)."""
        path = self._path
        return not os.path.lexists(path) or (os.path.isdir(path) and not os.listdir(path))

    def _open_or_clone(self) -> Repo:
        path = self._path
        missing = self._missing()
        if not missing and os.path.isdir(path):
            try:
                repo = Repo(path)
            except NotGitRepository:
                raise SourceRepoUnavailable(
                    f"{path} exists but is not a Git repository; empty or remove it "
                    "so the controller repository can be cloned there"
                ) from None
            protect_config(repo)
            try:
                self._move_credentials_out(repo)
            except Exception as exc:  # noqa: BLE001 - the repository still works as it is
                logger.warning(
                    "could not move the remote's credentials out of {}: {}",
                    repo.controldir(),
                    describe(exc, self._url),
                )
            return repo
        if not missing:
            raise SourceRepoUnavailable(f"{path} exists but is not a directory")
        if self._url is None:
            raise SourceRepoUnavailable(
                f"no controller repository at {path} and no URL to clone it from "
                "(set the controller repository URL or create the repository)"
            )
        return self._clone(self._url)

    def _clone(self, url: str) -> Repo:
        path = self._path
        shown = redact_url(url)
        existed = os.path.isdir(path)
        logger.info("cloning controller repository {} into {}", shown, path)
        # The remote is configured (and the reflogs name it) without the credentials; the
        # transport gets them separately.
        bare_url, username, password = split_credentials(url)
        source_dir = local_remote_dir(bare_url) if username is None and password is None else None
        message = b"clone: from " + bare_url.encode("utf-8")
        try:
            os.makedirs(path, exist_ok=True)
            if source_dir is not None:  # on this machine: its packs copied (.local_clone)
                repo = clone_local(source_dir, path, bare_url, self._remote_name, message)
            else:  # one pack from the server, the refs in one file (.network_clone)
                repo = clone_network(path, bare_url, self._remote_name, message, username, password)
        except Exception as exc:  # noqa: BLE001 - any transport/protocol/OS failure
            reason = describe(exc, url)
            logger.debug("clone of {} failed: {}", shown, reason)
            self._remove_partial_clone(existed)
            raise FetchFailed(
                f"cloning the controller repository from {shown} into {path} failed: {reason}"
            ) from None
        protect_config(repo)
        logger.info("cloned controller repository {} into {}", shown, path)
        return repo

    def _remove_partial_clone(self, existed: bool) -> None:
        """Leave the path as it was before a failed clone: absent, or an empty directory."""
        path = self._path
        if not os.path.isdir(path):
            return
        if not existed:
            shutil.rmtree(path, ignore_errors=True)
            return
        for entry in os.scandir(path):
            remove_entry(entry.path)

    def _move_credentials_out(self, repo: Repo) -> None:
        """Migrate an older clone (see :mod:`.credentials`); warn once per adapter when the
        credentials have to stay in ``.git/config``, as every open comes here."""
        remote_url = self._remote_url(repo)
        moved = move_credentials_out(repo, self._remote_name, remote_url, self._url)
        if moved or self._kept_credentials_warned:
            return
        self._kept_credentials_warned = True
        logger.warning(
            "the remote {!r} of {} has credentials in its URL; they stay in "
            ".git/config (mode 0600) as the controller repository URL configured "
            "here is not on the same server ({})",
            self._remote_name,
            self._path,
            redact_url(self._url) if self._url else "none",
        )

    def _remote_url(self, repo: Repo) -> str | None:
        config = repo.get_config()
        try:
            value = config.get((b"remote", self._remote_name.encode("ascii")), b"url")
        except KeyError:
            return None
        return value.decode("utf-8", "replace")
