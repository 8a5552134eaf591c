"""DulwichSourceRepo and URL credentials: used for the transport, never in a message, a log
line or anything under ``.git`` (also after an older clone is migrated), sent to no other
server, and ``.git/config`` kept private.

Real repositories, the ``git`` CLI as fixture builder and oracle (git_remote.py); the HTTP
remote is dulwich's smart-HTTP server behind basic auth. The pure helpers are unit-tested
in tests/unit/test_git_credentials.py.
"""

from __future__ import annotations

import base64
import os
import stat
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote
from wsgiref.simple_server import WSGIServer, make_server

import pytest
from dulwich import porcelain
from dulwich.errors import NotGitRepository
from dulwich.repo import Repo
from dulwich.server import Backend
from dulwich.web import WSGIRequestHandlerLogger, make_wsgi_chain
from git_remote import Remote, captured_logs

from teg_ota.adapters.git import DulwichSourceRepo
from teg_ota.ports.source_repo import FetchFailed


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    with captured_logs() as lines:
        yield lines


# ---------------------------------------------------------------------------- messages and logs


SECRET_URL = "http://user:s3cret@127.0.0.1:9/x.git"


def _assert_no_secret(exc: BaseException, log_lines: list[str]) -> None:
    assert "s3cret" not in str(exc)
    assert "user:" not in str(exc)
    assert "127.0.0.1:9" in str(exc)  # the location is still named, without credentials
    rendered = "".join(traceback.format_exception(exc))
    assert "s3cret" not in rendered
    assert log_lines, "expected the adapter to log"
    assert not [line for line in log_lines if "s3cret" in line]


def test_credentials_never_leak_on_clone(controller_path: Path, log_lines: list[str]) -> None:
    repo = DulwichSourceRepo(str(controller_path), url=SECRET_URL)
    with pytest.raises(FetchFailed) as caught:
        repo.current_commit()
    _assert_no_secret(caught.value, log_lines)
    assert not controller_path.exists()


def test_credentials_never_leak_on_fetch(
    remote: Remote, controller_path: Path, log_lines: list[str]
) -> None:
    repo = DulwichSourceRepo(str(controller_path), url=remote.url)
    repo.fetch()
    remote.git(controller_path, "remote", "set-url", "origin", SECRET_URL)
    log_lines.clear()
    with pytest.raises(FetchFailed) as caught:
        repo.fetch()
    _assert_no_secret(caught.value, log_lines)


def _config_mode(controller_path: Path) -> int:
    return stat.S_IMODE((controller_path / ".git" / "config").stat().st_mode)


def _set_remote_url(controller_path: Path, url: str) -> None:
    """Write remote.origin.url the way dulwich does (a new file, mode from the umask)."""
    with Repo(str(controller_path)) as raw:
        config = raw.get_config()
        config.set((b"remote", b"origin"), b"url", url.encode())
        config.write_to_path()


def test_config_with_credentials_is_private_and_still_used(
    remote: Remote, controller_path: Path, log_lines: list[str]
) -> None:
    old_umask = os.umask(0o022)
    try:
        repo = DulwichSourceRepo(str(controller_path), url=remote.url)
        assert repo.current_commit() == remote.first  # clones
        assert _config_mode(controller_path) == 0o600

        # Credentials written into the config by dulwich itself: the file is 0644 again.
        _set_remote_url(controller_path, SECRET_URL)
        assert _config_mode(controller_path) == 0o644
        assert remote.git(controller_path, "config", "remote.origin.url") == SECRET_URL
        log_lines.clear()
        with pytest.raises(FetchFailed) as caught:
            repo.fetch()
        # The fetch went to the configured remote (read from the private config) ...
        _assert_no_secret(caught.value, log_lines)
        # ... and the file was made private when the repository was opened.
        assert _config_mode(controller_path) == 0o600
        assert remote.git(controller_path, "config", "remote.origin.url") == SECRET_URL

        # Back to the reachable remote, via the same config API: fetch uses it.
        _set_remote_url(controller_path, remote.url)
        assert _config_mode(controller_path) == 0o644
        second = remote.commit({"app.py": "print('v2')\n"}, "second")
        remote.tag("v2.0")
        remote.push()
        repo.fetch()
        assert repo.resolve("v2.0") == second
        assert _config_mode(controller_path) == 0o600

        # Any open makes it private, not only fetch.
        (controller_path / ".git" / "config").chmod(0o644)
        assert repo.current_commit() == remote.first
        assert _config_mode(controller_path) == 0o600
    finally:
        os.umask(old_umask)


def test_credentials_in_the_underlying_error_text_are_scrubbed(
    remote: Remote,
    controller_path: Path,
    log_lines: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = "https://deploy:s3cret%21@git.example.invalid/ctl.git"
    repo = DulwichSourceRepo(str(controller_path), url=remote.url)
    repo.fetch()
    remote.git(controller_path, "remote", "set-url", "origin", url)

    def leaky_fetch(*_args: object, **_kwargs: object) -> None:
        raise OSError(f"cannot reach {url} (user deploy, password s3cret!)\nsecond line {url}")

    # The adapter's one fetch call (fetching.fetch_changed, as repository imports it).
    monkeypatch.setattr("teg_ota.adapters.git.repository.fetch_changed", leaky_fetch)
    log_lines.clear()
    with pytest.raises(FetchFailed) as caught:
        repo.fetch()
    message = str(caught.value)
    assert "s3cret" not in message
    assert "https://git.example.invalid/ctl.git" in message
    assert "".join(traceback.format_exception(caught.value)).count("s3cret") == 0
    assert log_lines
    assert not [line for line in log_lines if "s3cret" in line]


# ---------------------------------------------------------------------------- credentials in .git

TOKEN = "SECRET-TOKEN"


class _ServedRepos(Backend):
    """dulwich's smart-HTTP backend, opening the repository afresh for every request (so
    what the test pushes with the git CLI is served at once)."""

    def __init__(self, repos: dict[str, Path]) -> None:
        self._repos = repos

    def open_repository(self, path: str | bytes) -> Any:
        target = self._repos.get(os.fsdecode(path))
        if target is None:
            raise NotGitRepository(path)
        return Repo(str(target))


@dataclass
class HttpRemote:
    """``remote.bare`` served over smart HTTP by dulwich.web on 127.0.0.1, behind HTTP basic
    auth (user ``deploy``, password :data:`TOKEN`): without the credentials nothing is served."""

    remote: Remote
    port: int
    authorised: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def url(self, userinfo: str | None = f"deploy:{TOKEN}") -> str:
        at = f"{userinfo}@" if userinfo else ""
        return f"http://{at}127.0.0.1:{self.port}/ctl.git"


@pytest.fixture
def http_remote(remote: Remote) -> Iterator[HttpRemote]:
    git_app = make_wsgi_chain(_ServedRepos({"/ctl.git": remote.bare}))
    expected = "Basic " + base64.b64encode(f"deploy:{TOKEN}".encode()).decode()
    served = HttpRemote(remote, 0)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}"
        if environ.get("HTTP_AUTHORIZATION") != expected:
            served.refused.append(request)
            start_response(
                "401 Unauthorized",
                [("WWW-Authenticate", 'Basic realm="git"'), ("Content-Length", "0")],
            )
            return [b""]
        served.authorised.append(request)
        return git_app(environ, start_response)

    class Quiet(WSGIRequestHandlerLogger):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server: WSGIServer = make_server("127.0.0.1", 0, app, handler_class=Quiet)
    served.port = server.server_port
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _files_holding(root: Path, secret: str) -> list[str]:
    """Every path under ``root`` whose name or content holds ``secret`` (raw, percent-encoded
    or in HTTP basic-auth form), like ``grep -r`` over every file, packs and logs included."""
    needles = [
        secret.encode(),
        quote(secret, safe="").encode(),
        base64.b64encode(f"deploy:{secret}".encode()),
    ]
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if any(n.decode() in name for n in needles):
                found.append(str(path))
            elif path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                if any(n in data for n in needles):
                    found.append(str(path))
    return found


def test_http_credentials_are_used_but_never_written_into_dot_git(
    http_remote: HttpRemote, controller_path: Path, log_lines: list[str]
) -> None:
    remote = http_remote.remote
    dot_git = controller_path / ".git"
    repo = DulwichSourceRepo(str(controller_path), url=http_remote.url())
    repo.fetch()  # clones over HTTP, with the credentials
    assert repo.resolve("v1.0") == remote.first
    assert http_remote.authorised and http_remote.refused == []
    assert _files_holding(dot_git, TOKEN) == []
    # The remote is configured without credentials; the reflogs name it the same way (HEAD's
    # and the branch's: a clone writes the tags packed, without a reflog, as git clone does).
    assert remote.git(controller_path, "config", "remote.origin.url") == http_remote.url(None)
    for reflog in (dot_git / "logs" / "HEAD", dot_git / "logs" / "refs" / "heads" / "main"):
        assert f"clone: from {http_remote.url(None)}" in reflog.read_text()

    second = remote.commit({"app.py": "print('v2')\n"}, "second")
    remote.tag("v1.1")
    remote.push()
    http_remote.authorised.clear()
    repo.fetch()  # the credentials come from the adapter's URL again
    assert repo.resolve("v1.1") == second
    assert remote.git(controller_path, "rev-parse", "refs/remotes/origin/main") == second
    assert http_remote.authorised and http_remote.refused == []
    assert _files_holding(dot_git, TOKEN) == [], "the fetch wrote the token into .git"
    fetched = (dot_git / "logs" / "refs" / "tags" / "v1.1").read_text()
    assert fetched.rstrip().endswith(f"fetch: from {http_remote.url(None)}")
    assert _config_mode(controller_path) == 0o600
    assert not [line for line in log_lines if TOKEN in line]

    # The server does refuse a fetch without the credentials: .git alone cannot fetch.
    without = DulwichSourceRepo(str(controller_path), url=http_remote.url(None))
    with pytest.raises(FetchFailed):
        without.fetch()
    assert http_remote.refused
    # Credentials of another origin (another port) are not sent to the configured remote.
    elsewhere = DulwichSourceRepo(
        str(controller_path), url=f"http://deploy:{TOKEN}@127.0.0.1:9/ctl.git"
    )
    http_remote.refused.clear()
    authorised = len(http_remote.authorised)
    with pytest.raises(FetchFailed):
        elsewhere.fetch()
    assert http_remote.refused and len(http_remote.authorised) == authorised


def test_an_older_clone_with_credentials_in_dot_git_is_migrated(
    http_remote: HttpRemote, controller_path: Path, log_lines: list[str]
) -> None:
    remote = http_remote.remote
    dot_git = controller_path / ".git"
    # What earlier releases did: clone with the URL as it is (credentials in .git/config and
    # in every reflog, mode 0644).
    porcelain.clone(http_remote.url(), str(controller_path), errstream=_NullBytes()).close()
    leaked = _files_holding(dot_git, TOKEN)
    assert str(dot_git / "config") in leaked
    assert str(dot_git / "logs" / "refs" / "tags" / "v1.0") in leaked

    repo = DulwichSourceRepo(str(controller_path), url=http_remote.url())
    assert repo.current_commit() == remote.first  # opening migrates
    assert _files_holding(dot_git, TOKEN) == []
    assert remote.git(controller_path, "config", "remote.origin.url") == http_remote.url(None)
    assert _config_mode(controller_path) == 0o600
    reflog = (dot_git / "logs" / "refs" / "tags" / "v1.0").read_text()
    assert f"clone: from {http_remote.url(None)}" in reflog  # scrubbed, not deleted
    assert remote.git(controller_path, "reflog", "show", "refs/tags/v1.0")
    assert remote.git(controller_path, "fsck", "--no-progress") == ""

    second = remote.commit({"app.py": "print('v2')\n"}, "second")
    remote.tag("v1.1")
    remote.push()
    repo.fetch()
    assert repo.resolve("v1.1") == second
    assert _files_holding(dot_git, TOKEN) == []
    assert not [line for line in log_lines if TOKEN in line]


class _NullBytes:
    def write(self, data: bytes) -> int:
        return len(data)

    def flush(self) -> None:
        pass
