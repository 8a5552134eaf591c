"""SourceRepo adapter on dulwich: pure Python Git, no ``git`` binary, no subprocess, no shell.

The controller repository lives at ``CONTROLLER_GIT_PATH``. It is cloned lazily from ``url``
the first time it is needed, fetched from its configured remote (never from a bare URL:
dulwich then writes objects but no refs), and reset to a commit the way
``git checkout -f <c> && git reset --hard <c> && git clean -fdx`` would.

Every string that reaches dulwich as a ref name or object id was validated by
:func:`teg_ota.domain.model.versions.parse_version` first, and only ``refs/tags/<tag>`` or a full
40-hex object id is ever looked up: no revision expressions, no branches.

Remote URLs may carry credentials (``https://user:token@host/repo.git``); no log line and no
exception message of this module contains them (see :func:`redact_url`), and neither does
anything under ``.git/``: the remote is configured with the URL WITHOUT its credentials, and
they are handed to dulwich's transport (``username=`` / ``password=``) at clone and fetch
time only, from the URL the adapter was constructed with, and only for a remote on the same
origin (scheme, host, port): a token is never sent to another server. Reflog messages
("clone: from <url>", "fetch: from <url>") name the URL without credentials.

A clone made before (remote URL with credentials in ``.git/config``, and in the reflogs under
``.git/logs/``) is migrated when it is opened: credentials are scrubbed from the reflogs
first, then the remote URL is written without them (that write is the commit point: a crash
in between repeats the migration). If the adapter has no URL of the same origin to take the
credentials from, the configured URL keeps them (fetches still need them) and only the
reflogs are scrubbed. ``.git/config`` is kept readable by its owner only (mode 0600) either
way, after every clone and whenever the repository is opened.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

from dulwich import porcelain
from dulwich.errors import NotGitRepository
from dulwich.file import FileLocked, GitFile
from dulwich.index import Index
from dulwich.objects import Commit, ObjectID, ShaFile, Tag
from dulwich.refs import HEADREF, LOCAL_TAG_PREFIX, DiskRefsContainer, Ref
from dulwich.repo import Repo
from loguru import logger

from teg_ota.domain.model.errors import InvalidVersion
from teg_ota.domain.model.versions import VersionKind, parse_version
from teg_ota.ports.source_repo import (
    FetchFailed,
    ResetFailed,
    SourceRepoError,
    UnknownVersion,
)

__all__ = ["DulwichSourceRepo", "SourceRepoUnavailable", "redact_url"]

_HEX40_RE = re.compile(rb"[0-9a-f]{40}")
# The userinfo part of any URL in a text: "scheme://user:password@" -> "scheme://".
_USERINFO_RE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/?#@\s]*@")
_GITLINK_MODE = 0o160000
_MAX_TAG_DEPTH = 16
_REDACTED = "***"
_CONFIG_MODE = 0o600
_HTTP_SCHEMES = frozenset({"http", "https"})
_SSH_SCHEMES = frozenset({"ssh", "git+ssh"})
_DEFAULT_PORTS = {"http": 80, "https": 443, "ssh": 22, "git+ssh": 22}
_MAX_REFLOG_BYTES = 16 * 1024 * 1024


class SourceRepoUnavailable(SourceRepoError):
    """There is no repository at the configured path, and nothing to clone it from."""


def redact_url(url: str) -> str:
    """``url`` without its ``user:password@`` part (also for every URL inside a longer text)."""
    return _USERINFO_RE.sub(lambda m: m.group("scheme"), url)


def _secrets_of(url: str | None) -> list[str]:
    """The credential strings in ``url``, raw and percent-decoded, longest first.

    The password, and for HTTP(S) a user name given alone (a token: ``https://<token>@host``).
    An SSH user name (``ssh://git@host``) is no secret, and masking it would garble messages.
    """
    if not url:
        return []
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    if "@" not in parts.netloc:
        return []
    userinfo = parts.netloc.rsplit("@", 1)[0]
    user, colon, password = userinfo.partition(":")
    candidates: set[str] = set()
    if colon:
        candidates |= {userinfo, unquote(userinfo), password, unquote(password)}
    elif parts.scheme.lower() in ("http", "https"):
        candidates |= {user, unquote(user)}
    return sorted((c for c in candidates if c), key=len, reverse=True)


def _split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """``(url without its secrets, user name, password)`` (percent-decoded) for the transport.

    HTTP(S): the whole userinfo goes (a user name alone may be a token). SSH: only a
    password goes; the user name stays in the URL (``ssh://git@host``: it is no secret, and
    SSH needs it). Anything else (local paths, ``git@host:path``) is returned unchanged.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return url, None, None
    scheme = parts.scheme.lower()
    if "@" not in parts.netloc or scheme not in _HTTP_SCHEMES | _SSH_SCHEMES:
        return url, None, None
    prefix_end = url.find("://") + 3
    if prefix_end < 3 or not url[prefix_end:].startswith(parts.netloc):
        return url, None, None
    rest = url[prefix_end + len(parts.netloc) :]
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    if scheme in _HTTP_SCHEMES:
        bare = url[:prefix_end] + hostport + rest
        return bare, unquote(user), unquote(password) if colon else None
    if not colon:
        return url, None, None
    return url[:prefix_end] + user + "@" + hostport + rest, None, unquote(password)


def _origin(url: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of a URL with a host, default ports made explicit."""
    try:
        parts: SplitResult = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not parts.hostname or scheme not in _HTTP_SCHEMES | _SSH_SCHEMES:
        return None
    return scheme, parts.hostname.lower(), port if port is not None else _DEFAULT_PORTS[scheme]


def _scrub(text: str, *urls: str | None) -> str:
    """``text`` with every URL's userinfo removed and the given URLs' secrets masked."""
    text = redact_url(text)
    for url in urls:
        for secret in _secrets_of(url):
            text = text.replace(secret, _REDACTED)
    return text


def _describe(exc: BaseException, *urls: str | None) -> str:
    """A one-line, credential-free description of an underlying exception."""
    detail = str(exc).strip().splitlines()
    first = detail[0] if detail else ""
    name = type(exc).__name__
    return _scrub(f"{name}: {first}" if first else name, *urls)


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

    # ------------------------------------------------------------------ SourceRepo

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
            username, password = self._credentials_for(remote_url)
            try:
                # With a configured remote name, dulwich imports refs/heads/* as
                # refs/remotes/<remote>/* and refs/tags/* as refs/tags/*, setting each
                # unconditionally: a tag that moved on the remote moves here too. The
                # reflog message names the URL without credentials (dulwich's default
                # would quote the configured URL as it is).
                result = porcelain.fetch(
                    repo,
                    self._remote_name,
                    outstream=io.StringIO(),
                    errstream=io.BytesIO(),
                    message=b"fetch: from " + redact_url(remote_url).encode("utf-8"),
                    quiet=True,
                    username=username,
                    password=password,
                )
            except Exception as exc:  # noqa: BLE001 - any transport/protocol failure
                reason = _describe(exc, remote_url, self._url)
                logger.debug("fetch from {} failed: {}", shown, reason)
                # "from None": the original exception's text may hold the credentials.
                raise FetchFailed(
                    f"fetching the controller repository from {shown} failed: {reason}"
                ) from None
        tags = sum(1 for name in result.refs if name.startswith(LOCAL_TAG_PREFIX))
        logger.info("fetched controller repository from {} ({} tag refs)", shown, tags)

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
                commit = self._commit(repo, version.value)
                if commit is None:
                    raise unknown
                logger.debug("version {} is a commit", version.value)
                return commit.id.decode("ascii")
            target = self._read_tag_ref(repo, version.value)
            if target is None:
                raise unknown
            peeled = self._peel(repo, target)
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
            return self._commit(repo, version.value) is not None

    def current_commit(self) -> str | None:
        with self._open() as repo:
            try:
                head = repo.refs[HEADREF]
            except KeyError:
                return None
            peeled = self._peel(repo, head)
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
            target = self._commit(repo, version.value)
            if target is None:
                raise ResetFailed(
                    f"cannot reset the controller work tree to {version.value}: "
                    "no such commit in the repository"
                )
            logger.info("resetting controller work tree {} to {}", self._path, version.value)
            try:
                # Clean first so untracked files and directories cannot obstruct the
                # checkout, then reset (HEAD already detached, so no branch moves), then
                # clean again with the new index (removes directories emptied by the reset).
                self._clean_untracked(repo)
                self._detach_head(repo)
                porcelain.reset(repo, "hard", target)
                self._clean_untracked(repo)
                self._detach_head(repo, target.id)
            except Exception as exc:  # noqa: BLE001 - dulwich and OS failures alike
                reason = _describe(exc, self._url)
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
            _protect_config(repo)
            try:
                self._move_credentials_out(repo)
            except Exception as exc:  # noqa: BLE001 - the repository still works as it is
                logger.warning(
                    "could not move the remote's credentials out of {}: {}",
                    repo.controldir(),
                    _describe(exc, self._url),
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
        bare_url, username, password = _split_credentials(url)
        auth: dict[str, Any] = {}  # typed loosely: porcelain.clone passes **kwargs on
        if username is not None:
            auth["username"] = username
        if password is not None:
            auth["password"] = password
        try:
            if not existed:
                os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            repo = porcelain.clone(
                bare_url,
                path,
                bare=False,
                checkout=True,
                origin=self._remote_name,
                errstream=io.BytesIO(),
                **auth,
            )
        except Exception as exc:  # noqa: BLE001 - any transport/protocol/OS failure
            reason = _describe(exc, url)
            logger.debug("clone of {} failed: {}", shown, reason)
            self._remove_partial_clone(existed)
            raise FetchFailed(
                f"cloning the controller repository from {shown} into {path} failed: {reason}"
            ) from None
        _protect_config(repo)
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
            _remove_entry(entry.path)

    def _credentials_for(self, remote_url: str) -> tuple[str | None, str | None]:
        """The adapter URL's credentials, for a configured remote URL without its own on
        the same origin; else ``(None, None)`` (a URL with credentials uses its own)."""
        if self._url is None:
            return None, None
        bare_remote, remote_user, remote_password = _split_credentials(remote_url)
        if remote_user is not None or remote_password is not None:
            return None, None
        bare_own, username, password = _split_credentials(self._url)
        origin = _origin(bare_own)
        if origin is None or origin != _origin(bare_remote):
            return None, None
        return username, password

    def _move_credentials_out(self, repo: Repo) -> None:
        """Migrate a clone whose configured remote URL holds credentials (module docstring)."""
        remote_url = self._remote_url(repo)
        if remote_url is None:
            return
        bare_url, _, _ = _split_credentials(remote_url)
        if bare_url == remote_url:
            return
        scrubbed = _scrub_reflogs(repo.controldir(), remote_url, self._url)
        if scrubbed:
            logger.info("removed the remote's credentials from {} reflog files", scrubbed)
        own_origin = _origin(_split_credentials(self._url)[0]) if self._url else None
        if own_origin is None or own_origin != _origin(bare_url):
            if not self._kept_credentials_warned:
                self._kept_credentials_warned = True
                logger.warning(
                    "the remote {!r} of {} has credentials in its URL; they stay in "
                    ".git/config (mode 0600) as the controller repository URL configured "
                    "here is not on the same server ({})",
                    self._remote_name,
                    self._path,
                    redact_url(self._url) if self._url else "none",
                )
            return
        config = repo.get_config()
        config.set((b"remote", self._remote_name.encode("ascii")), b"url", bare_url.encode())
        config.write_to_path()
        _protect_config(repo)
        logger.info(
            "moved the credentials of remote {!r} out of {}: they are taken from the "
            "configured controller repository URL at fetch time",
            self._remote_name,
            os.path.join(repo.controldir(), "config"),
        )

    def _remote_url(self, repo: Repo) -> str | None:
        config = repo.get_config()
        try:
            value = config.get((b"remote", self._remote_name.encode("ascii")), b"url")
        except KeyError:
            return None
        return value.decode("utf-8", "replace")

    @staticmethod
    def _commit(repo: Repo, hex_sha: str) -> Commit | None:
        sha = ObjectID(hex_sha.lower().encode("ascii"))
        if sha not in repo.object_store:
            return None
        obj = repo.object_store[sha]
        return obj if isinstance(obj, Commit) else None

    @staticmethod
    def _read_tag_ref(repo: Repo, tag: str) -> ObjectID | None:
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

    @staticmethod
    def _peel(repo: Repo, sha: ObjectID) -> Commit | None:
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

    # ------------------------------------------------------------------ reset helpers

    @staticmethod
    def _detach_head(repo: Repo, sha: ObjectID | None = None) -> None:
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

    def _clean_untracked(self, repo: Repo) -> None:
        """``git clean -ffdx``: remove every path the index does not track, ignored or not.

        Symlinks are removed, never followed; the top-level ``.git`` is never touched;
        directories with no tracked file below them go entirely; gitlinks are left alone.
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
        root = os.fsencode(self._path)
        removed = _clean_dir(root, b"", tracked, tracked_dirs, gitlinks)
        if removed:
            logger.debug("removed {} untracked paths from {}", removed, self._path)


def _protect_config(repo: Repo) -> None:
    """Make the repository's ``config`` (it holds the remote URL with its credentials)
    readable by its owner only. Dulwich rewrites the file with the umask's mode; this runs
    on every clone and open, so the mode is restored before the work tree is used.

    A failure is logged, not raised: the repository still works, and the build never sends
    ``.git`` to the engine anyway.
    """
    config_path = os.path.join(repo.controldir(), "config")
    try:
        st = os.stat(config_path)
        if stat.S_IMODE(st.st_mode) != _CONFIG_MODE:
            os.chmod(config_path, _CONFIG_MODE)
            logger.debug("made {} readable by its owner only", config_path)
    except FileNotFoundError:
        return
    except OSError as exc:
        logger.warning(
            "could not make {} (it may hold the remote's credentials) private: {}",
            config_path,
            _describe(exc),
        )


def _scrub_reflog_text(text: str, *urls: str | None) -> str:
    """A reflog's lines with :func:`_scrub` applied to each message (after the tab) only:
    the object ids and the identity before it are left exactly as they are."""
    lines = text.split("\n")
    for index, line in enumerate(lines):
        head, tab, message = line.partition("\t")
        if tab:
            lines[index] = head + tab + _scrub(message, *urls)
    return "\n".join(lines)


def _scrub_reflogs(controldir: str, *urls: str | None) -> int:
    """Remove URL credentials (and the given URLs' secrets) from the messages of every
    reflog under ``<controldir>/logs``; returns how many files were rewritten. Each file is
    rewritten through Git's lock file (``<name>.lock``, then a rename), only if it changes."""
    changed = 0
    for dirpath, _dirnames, filenames in os.walk(os.path.join(controldir, "logs")):
        for name in filenames:
            if name.endswith(".lock"):
                continue
            log_path = os.path.join(dirpath, name)
            try:
                if os.path.getsize(log_path) > _MAX_REFLOG_BYTES:
                    logger.warning("reflog {} is too large to scrub; left as it is", log_path)
                    continue
                with open(log_path, "rb") as f:
                    data = f.read()
                text = data.decode("utf-8", "surrogateescape")
                clean = _scrub_reflog_text(text, *urls)
                if clean == text:
                    continue
                with GitFile(log_path, "wb") as out:
                    out.write(clean.encode("utf-8", "surrogateescape"))
                changed += 1
            except (OSError, FileLocked) as exc:
                logger.warning("could not scrub reflog {}: {}", log_path, _describe(exc, *urls))
    return changed


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
        _remove_entry(entry.path)
        removed += 1
    return removed


def _remove_entry(path: str | bytes) -> None:
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
