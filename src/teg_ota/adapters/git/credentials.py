"""Credentials in Git remote URLs: handed to the transport, never logged, never under ``.git``.

Remote URLs may carry credentials (``https://user:token@host/repo.git``). No log line and no
exception message of the git adapter contains them (:func:`redact_url`, :func:`scrub`,
:func:`describe`), and neither does anything under ``.git/``: the remote is configured with
the URL WITHOUT its credentials (:func:`split_credentials`), and they are handed to dulwich's
transport (``username=`` / ``password=``) at clone and fetch time only, from the URL the
adapter was constructed with, and only for a remote on the same origin (scheme, host, port;
:func:`credentials_for`): a token is never sent to another server. Reflog messages
("clone: from <url>", "fetch: from <url>") name the URL without credentials.

A clone made before (remote URL with credentials in ``.git/config``, and in the reflogs under
``.git/logs/``) is migrated when it is opened (:func:`move_credentials_out`): credentials are
scrubbed from the reflogs first, then the remote URL is written without them (that write is
the commit point: a crash in between repeats the migration). If the adapter has no URL of
the same origin to take the credentials from, the configured URL keeps them (fetches still
need them) and only the reflogs are scrubbed. ``.git/config`` is kept readable by its owner
only (mode 0600) either way, after every clone and whenever the repository is opened
(:func:`protect_config`).

Everything above the file-system section is pure string work, unit-tested on its own.
"""

from __future__ import annotations

import os
import re
import stat
from urllib.parse import SplitResult, unquote, urlsplit

from dulwich.file import FileLocked, GitFile
from dulwich.repo import Repo
from loguru import logger

__all__ = [
    "REDACTED",
    "credentials_for",
    "describe",
    "move_credentials_out",
    "origin_of",
    "protect_config",
    "redact_url",
    "scrub",
    "scrub_reflog_text",
    "scrub_reflogs",
    "secrets_of",
    "split_credentials",
]

# The userinfo part of any URL in a text: "scheme://user:password@" -> "scheme://".
_USERINFO_RE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/?#@\s]*@")
REDACTED = "***"
_CONFIG_MODE = 0o600
_HTTP_SCHEMES = frozenset({"http", "https"})
_SSH_SCHEMES = frozenset({"ssh", "git+ssh"})
_DEFAULT_PORTS = {"http": 80, "https": 443, "ssh": 22, "git+ssh": 22}
_MAX_REFLOG_BYTES = 16 * 1024 * 1024

# ---------------------------------------------------------------------------- pure


def redact_url(url: str) -> str:
    """``url`` without its ``user:password@`` part (also for every URL inside a longer text)."""
    return _USERINFO_RE.sub(lambda m: m.group("scheme"), url)


def secrets_of(url: str | None) -> list[str]:
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


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
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


def origin_of(url: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of a URL with a host, default ports made explicit: what must
    match before a URL's credentials may be sent to another URL."""
    try:
        parts: SplitResult = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not parts.hostname or scheme not in _HTTP_SCHEMES | _SSH_SCHEMES:
        return None
    return scheme, parts.hostname.lower(), port if port is not None else _DEFAULT_PORTS[scheme]


def credentials_for(own_url: str | None, remote_url: str) -> tuple[str | None, str | None]:
    """``(user name, password)`` of ``own_url`` (the adapter's) for a configured remote URL
    without credentials of its own on the same origin; else ``(None, None)``: a URL with
    credentials uses its own, and a token never goes to another server."""
    if own_url is None:
        return None, None
    bare_remote, remote_user, remote_password = split_credentials(remote_url)
    if remote_user is not None or remote_password is not None:
        return None, None
    bare_own, username, password = split_credentials(own_url)
    origin = origin_of(bare_own)
    if origin is None or origin != origin_of(bare_remote):
        return None, None
    return username, password


def scrub(text: str, *urls: str | None) -> str:
    """``text`` with every URL's userinfo removed and the given URLs' secrets masked (an
    underlying error may quote a password outside any URL)."""
    text = redact_url(text)
    for url in urls:
        for secret in secrets_of(url):
            text = text.replace(secret, REDACTED)
    return text


def describe(exc: BaseException, *urls: str | None) -> str:
    """A one-line, credential-free description of an underlying exception (its text is
    dulwich's or the OS's, and may quote the URL as it was given)."""
    detail = str(exc).strip().splitlines()
    first = detail[0] if detail else ""
    name = type(exc).__name__
    return scrub(f"{name}: {first}" if first else name, *urls)


def scrub_reflog_text(text: str, *urls: str | None) -> str:
    """A reflog's lines with :func:`scrub` applied to each message (after the tab) only:
    the object ids and the identity before it are left exactly as they are."""
    lines = text.split("\n")
    for index, line in enumerate(lines):
        head, tab, message = line.partition("\t")
        if tab:
            lines[index] = head + tab + scrub(message, *urls)
    return "\n".join(lines)


# ---------------------------------------------------------------------------- .git on disk


def protect_config(repo: Repo) -> None:
    """Make the repository's ``config`` (it may hold the remote URL with its credentials)
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
            describe(exc),
        )


def scrub_reflogs(controldir: str, *urls: str | None) -> int:
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
                clean = scrub_reflog_text(text, *urls)
                if clean == text:
                    continue
                with GitFile(log_path, "wb") as out:
                    out.write(clean.encode("utf-8", "surrogateescape"))
                changed += 1
            except (OSError, FileLocked) as exc:
                logger.warning("could not scrub reflog {}: {}", log_path, describe(exc, *urls))
    return changed


def move_credentials_out(
    repo: Repo, remote_name: str, remote_url: str | None, own_url: str | None
) -> bool:
    """Migrate a clone whose configured remote URL holds credentials (module docstring).

    Returns ``False`` only when the configured URL keeps its credentials (``own_url`` is not
    on the same origin, so fetches still need them there): the caller decides how often to
    warn about that.
    """
    if remote_url is None:
        return True
    bare_url, _, _ = split_credentials(remote_url)
    if bare_url == remote_url:
        return True
    scrubbed = scrub_reflogs(repo.controldir(), remote_url, own_url)
    if scrubbed:
        logger.info("removed the remote's credentials from {} reflog files", scrubbed)
    own_origin = origin_of(split_credentials(own_url)[0]) if own_url else None
    if own_origin is None or own_origin != origin_of(bare_url):
        return False
    config = repo.get_config()
    config.set((b"remote", remote_name.encode("ascii")), b"url", bare_url.encode())
    config.write_to_path()
    protect_config(repo)
    logger.info(
        "moved the credentials of remote {!r} out of {}: they are taken from the "
        "configured controller repository URL at fetch time",
        remote_name,
        os.path.join(repo.controldir(), "config"),
    )
    return True
