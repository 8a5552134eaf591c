"""DulwichSourceRepo against real repositories, with the ``git`` CLI as fixture builder and oracle.

Layout per test: ``remote.git`` (bare), ``work`` (a clone that commits, tags and pushes), and
``controller`` (what the adapter clones and manages). No Docker needed.
"""

from __future__ import annotations

import base64
import os
import shutil
import stat
import subprocess
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
from loguru import logger

from teg_ota.adapters.dulwich_repo import DulwichSourceRepo, SourceRepoUnavailable, redact_url
from teg_ota.ports.source_repo import (
    FetchFailed,
    ResetFailed,
    SourceRepo,
    SourceRepoError,
    UnknownVersion,
)


def _git_env(home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("GIT_") and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    env.update(
        HOME=str(home),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME="Test",
        GIT_AUTHOR_EMAIL="test@example.invalid",
        GIT_COMMITTER_NAME="Test",
        GIT_COMMITTER_EMAIL="test@example.invalid",
        GIT_AUTHOR_DATE="2024-01-01T00:00:00Z",
        GIT_COMMITTER_DATE="2024-01-01T00:00:00Z",
    )
    return env


class Git:
    """Runs the git CLI with an isolated configuration."""

    def __init__(self, home: Path) -> None:
        home.mkdir(exist_ok=True)
        self.env = _git_env(home)

    def __call__(self, cwd: Path, *args: str, check: bool = True) -> str:
        result = subprocess.run(
            [
                "git",
                "-c",
                "init.defaultBranch=main",
                "-c",
                "protocol.file.allow=always",
                "-c",
                "advice.detachedHead=false",
                "-c",
                "advice.nestedTag=false",
                "-c",
                "tag.gpgSign=false",
                "-c",
                "commit.gpgSign=false",
                *args,
            ],
            cwd=cwd,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed: {result.stderr}")
        return result.stdout.strip()

    def commit(self, work: Path, files: dict[str, str], message: str) -> str:
        for name, content in files.items():
            target = work / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        self(work, "add", "-A")
        self(work, "commit", "-q", "-m", message)
        return self(work, "rev-parse", "HEAD")


class Remote:
    """A bare remote and a work clone that publishes to it."""

    def __init__(self, tmp_path: Path) -> None:
        self.git = Git(tmp_path / "home")
        self.bare = tmp_path / "remote.git"
        self.work = tmp_path / "work"
        self.git(tmp_path, "init", "-q", "--bare", str(self.bare))
        self.git(tmp_path, "init", "-q", str(self.work))
        self.git(self.work, "remote", "add", "origin", str(self.bare))
        self.first = ""
        self.second = ""

    @property
    def url(self) -> str:
        return self.bare.as_uri()  # file:///...

    def commit(self, files: dict[str, str], message: str = "change") -> str:
        return self.git.commit(self.work, files, message)

    def tag(self, name: str, target: str = "HEAD", annotated: bool = False) -> None:
        if annotated:
            self.git(self.work, "tag", "-f", "-a", "-m", f"release {name}", name, target)
        else:
            self.git(self.work, "tag", "-f", name, target)

    def push(self) -> None:
        self.git(self.work, "push", "-q", "--force", "origin", "main")
        self.git(self.work, "push", "-q", "--force", "--tags", "origin")


def _make_remote(base: Path) -> Remote:
    r = Remote(base)
    r.first = r.commit({"app.py": "print('v1')\n", "README": "controller\n"}, "first")
    r.tag("v1.0")
    r.push()
    return r


@pytest.fixture
def remote(tmp_path: Path) -> Remote:
    return _make_remote(tmp_path)


@pytest.fixture
def controller_path(tmp_path: Path) -> Path:
    return tmp_path / "controller"


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    lines: list[str] = []
    logger.enable("teg_ota")
    sink = logger.add(lambda m: lines.append(str(m)), level="TRACE", format="{message}")
    try:
        yield lines
    finally:
        logger.remove(sink)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)


# ---------------------------------------------------------------------------- clone


def test_is_a_source_repo_and_constructor_touches_nothing(tmp_path: Path) -> None:
    path = tmp_path / "controller"
    repo = DulwichSourceRepo(str(path), url="http://user:s3cret@127.0.0.1:9/x.git")
    port: SourceRepo = repo  # structural typing, checked by mypy
    assert port.worktree == str(path)
    assert not path.exists()
    assert "s3cret" not in repr(repo)


def test_clones_when_missing(remote: Remote, controller_path: Path) -> None:
    repo = DulwichSourceRepo(str(controller_path), url=remote.url)
    assert repo.current_commit() == remote.first
    git = remote.git
    assert git(controller_path, "rev-parse", "HEAD") == remote.first
    assert git(controller_path, "config", "remote.origin.url") == remote.url
    assert git(controller_path, "rev-parse", "refs/remotes/origin/main") == remote.first
    assert (controller_path / "app.py").read_text() == "print('v1')\n"
    assert git(controller_path, "rev-parse", "--is-bare-repository") == "false"


def test_clones_into_an_empty_directory_from_a_plain_path(
    remote: Remote, controller_path: Path
) -> None:
    controller_path.mkdir()
    repo = DulwichSourceRepo(str(controller_path), url=str(remote.bare))
    assert repo.resolve("v1.0") == remote.first
    assert (controller_path / "README").exists()


def test_missing_repository_without_url(controller_path: Path) -> None:
    repo = DulwichSourceRepo(str(controller_path))
    with pytest.raises(SourceRepoUnavailable, match="no controller repository at"):
        repo.current_commit()
    assert issubclass(SourceRepoUnavailable, SourceRepoError)
    assert not controller_path.exists()


def test_non_repository_directory_is_refused(remote: Remote, controller_path: Path) -> None:
    controller_path.mkdir()
    (controller_path / "precious.txt").write_text("keep me")
    repo = DulwichSourceRepo(str(controller_path), url=remote.url)
    with pytest.raises(SourceRepoUnavailable, match="not a Git repository"):
        repo.fetch()
    assert (controller_path / "precious.txt").read_text() == "keep me"
    a_file = controller_path / "precious.txt"
    with pytest.raises(SourceRepoUnavailable, match="not a directory"):
        DulwichSourceRepo(str(a_file), url=remote.url).current_commit()


def test_failed_clone_leaves_nothing_behind(tmp_path: Path, controller_path: Path) -> None:
    repo = DulwichSourceRepo(str(controller_path), url=str(tmp_path / "nowhere.git"))
    with pytest.raises(FetchFailed):
        repo.current_commit()
    assert not controller_path.exists()
    controller_path.mkdir()
    with pytest.raises(FetchFailed):
        repo.current_commit()
    assert list(controller_path.iterdir()) == []


# ---------------------------------------------------------------------------- fetch


def test_fetch_brings_new_commit_and_tag(remote: Remote, controller_path: Path) -> None:
    repo = DulwichSourceRepo(str(controller_path), url=remote.url)
    repo.fetch()  # clones, then fetches (nothing new)
    second = remote.commit({"app.py": "print('v2')\n"}, "second")
    remote.tag("v1.1")
    remote.push()
    with pytest.raises(UnknownVersion):
        repo.resolve("v1.1")
    assert not repo.commit_exists(second)
    repo.fetch()
    assert repo.resolve("v1.1") == second
    assert repo.commit_exists(second)
    assert repo.resolve(second) == second
    assert remote.git(controller_path, "rev-parse", "refs/remotes/origin/main") == second
    # Fetch does not touch the work tree or HEAD.
    assert repo.current_commit() == remote.first


@pytest.mark.parametrize("annotated", [False, True], ids=["lightweight", "annotated"])
def test_moved_tag_is_updated_by_fetch(
    remote: Remote, controller_path: Path, annotated: bool
) -> None:
    remote.tag("release", annotated=annotated)
    remote.push()
    repo = DulwichSourceRepo(str(controller_path), url=remote.url)
    assert repo.resolve("release") == remote.first
    second = remote.commit({"fix.txt": "fix\n"}, "hotfix")
    remote.tag("release", second, annotated=annotated)
    remote.git(remote.work, "push", "-q", "origin", "main")
    remote.git(remote.work, "push", "-q", "--force", "origin", "release")
    repo.fetch()
    assert repo.resolve("release") == second
    assert remote.git(controller_path, "rev-parse", "release^{commit}") == second


def test_fetch_failure_when_remote_is_gone(remote: Remote, controller_path: Path) -> None:
    repo = DulwichSourceRepo(str(controller_path), url=remote.url)
    repo.fetch()
    shutil.rmtree(remote.bare)
    with pytest.raises(FetchFailed, match="fetching the controller repository"):
        repo.fetch()
    assert repo.current_commit() == remote.first


def test_fetch_without_configured_remote(remote: Remote, controller_path: Path) -> None:
    repo = DulwichSourceRepo(str(controller_path), url=remote.url, remote_name="upstream")
    repo.fetch()
    remote.git(controller_path, "remote", "remove", "upstream")
    with pytest.raises(FetchFailed, match="no remote 'upstream'"):
        repo.fetch()


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

    monkeypatch.setattr("teg_ota.adapters.dulwich_repo.porcelain.fetch", leaky_fetch)
    log_lines.clear()
    with pytest.raises(FetchFailed) as caught:
        repo.fetch()
    message = str(caught.value)
    assert "s3cret" not in message
    assert "https://git.example.invalid/ctl.git" in message
    assert "".join(traceback.format_exception(caught.value)).count("s3cret") == 0
    assert log_lines
    assert not [line for line in log_lines if "s3cret" in line]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:s3cret@host/x.git", "http://host/x.git"),
        ("https://token@host:8443/x.git", "https://host:8443/x.git"),
        ("https://host/x.git", "https://host/x.git"),
        ("/srv/git/x.git", "/srv/git/x.git"),
        ("git@github.com:org/x.git", "git@github.com:org/x.git"),
        (
            "error at https://u:p%40ss@h/x and ssh://me:pw@h2/y",
            "error at https://h/x and ssh://h2/y",
        ),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


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
    # The remote is configured without credentials; the reflogs name it the same way.
    assert remote.git(controller_path, "config", "remote.origin.url") == http_remote.url(None)
    reflog = (dot_git / "logs" / "refs" / "tags" / "v1.0").read_text()
    assert f"clone: from {http_remote.url(None)}" in reflog

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


# ---------------------------------------------------------------------------- resolve


@dataclass
class Tagged:
    """A cloned controller repository with every kind of tag; shared, used read-only."""

    remote: Remote
    repo: DulwichSourceRepo
    path: Path


@pytest.fixture(scope="module")
def tagged(tmp_path_factory: pytest.TempPathFactory) -> Tagged:
    base = tmp_path_factory.mktemp("tagged")
    remote = _make_remote(base)
    remote.second = remote.commit({"app.py": "print('v2')\n"}, "second")
    remote.tag("v2.0-annotated", annotated=True)
    remote.git(remote.work, "tag", "-a", "-m", "tag of a tag", "nested", "v2.0-annotated")
    remote.tag("release/1.0+build.5", remote.first)
    remote.git(remote.work, "tag", "tree-tag", "HEAD^{tree}")
    remote.push()
    path = base / "controller"
    repo = DulwichSourceRepo(str(path), url=remote.url)
    repo.fetch()
    return Tagged(remote, repo, path)


@pytest.mark.parametrize("tag", ["v1.0", "v2.0-annotated", "nested", "release/1.0+build.5"])
def test_tags_resolve_to_the_commit(tagged: Tagged, tag: str) -> None:
    resolved = tagged.repo.resolve(tag)
    assert resolved == tagged.remote.git(tagged.path, "rev-parse", f"refs/tags/{tag}^{{commit}}")
    assert len(resolved) == 40


def test_full_hash_resolves(tagged: Tagged) -> None:
    remote, repo = tagged.remote, tagged.repo
    second = remote.second
    assert repo.resolve(second) == second
    assert repo.resolve(second.upper()) == second
    assert repo.commit_exists(second)
    assert repo.commit_exists(remote.first)


def test_unknown_versions(tagged: Tagged) -> None:
    remote, repo, controller_path = tagged.remote, tagged.repo, tagged.path
    with pytest.raises(
        UnknownVersion,
        match=r"^unknown version 'v9\.9': no such tag or commit in the controller repository$",
    ):
        repo.resolve("v9.9")
    missing = "0123456789abcdef0123456789abcdef01234567"
    with pytest.raises(UnknownVersion, match="no such tag or commit"):
        repo.resolve(missing)
    assert not repo.commit_exists(missing)
    # Objects that exist but are not commits: a tree, a blob, an annotated tag object.
    tree = remote.git(controller_path, "rev-parse", "HEAD^{tree}")
    blob = remote.git(controller_path, "rev-parse", "HEAD:app.py")
    tag_object = remote.git(controller_path, "rev-parse", "refs/tags/v2.0-annotated")
    for sha in (tree, blob, tag_object):
        with pytest.raises(UnknownVersion):
            repo.resolve(sha)
        assert not repo.commit_exists(sha)
    with pytest.raises(UnknownVersion, match="does not name a commit"):
        repo.resolve("tree-tag")
    assert not repo.commit_exists("v1.0")  # a tag is not a commit hash
    assert not repo.commit_exists("--upload-pack=x")


@pytest.mark.parametrize(
    "hostile",
    [
        "--upload-pack=touch {marker}",
        "-c core.sshCommand=touch {marker}",
        "v1;touch {marker}",
        "$(touch {marker})",
        "`touch {marker}`",
        "v1;rm -rf /",
        "HEAD",
        "HEAD~1",
        "HEAD^",
        "v1.0^{commit}",
        "v1.0~1",
        "main",
        "origin/main",
        "refs/heads/main",
        "refs/tags/v1.0",
        "../../etc",
        "../../etc/passwd",
        "/etc/passwd",
        "abc1234",
        "@{-1}",
        "v1.0\nmain",
        "",
    ],
)
def test_hostile_inputs_are_unknown_versions(tagged: Tagged, tmp_path: Path, hostile: str) -> None:
    repo = tagged.repo
    marker = tmp_path / "pwned"
    value = hostile.replace("{marker}", str(marker))
    with pytest.raises(UnknownVersion):
        repo.resolve(value)
    assert not repo.commit_exists(value)
    with pytest.raises(ResetFailed):
        repo.reset_to(value)
    assert not marker.exists()
    assert Path("/etc/passwd").exists()


def test_branch_named_like_a_tag_is_not_used(remote: Remote, controller_path: Path) -> None:
    remote.git(remote.work, "branch", "v3.0")
    remote.git(remote.work, "push", "-q", "origin", "v3.0")
    repo = DulwichSourceRepo(str(controller_path), url=remote.url)
    repo.fetch()
    with pytest.raises(UnknownVersion):
        repo.resolve("v3.0")


# ---------------------------------------------------------------------------- reset_to / HEAD


def test_current_commit_of_an_empty_repository(remote: Remote, controller_path: Path) -> None:
    remote.git(remote.work.parent, "init", "-q", str(controller_path))
    repo = DulwichSourceRepo(str(controller_path))
    assert repo.current_commit() is None


def _tree_files(root: Path) -> set[str]:
    found: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        if rel == Path("."):
            dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in filenames + [d for d in dirnames if (Path(dirpath) / d).is_symlink()]:
            found.add(str(rel / name) if rel != Path(".") else name)
        if not filenames and not dirnames and rel != Path("."):
            found.add(str(rel) + "/")  # an empty directory
    return found


def test_reset_to_makes_the_work_tree_exactly_the_commit(
    remote: Remote, controller_path: Path, tmp_path: Path
) -> None:
    git = remote.git
    old = remote.commit(
        {
            ".gitignore": "*.log\nbuild/\n",
            "keep.txt": "old keep\n",
            "old_only.txt": "gone in new\n",
            "olddir/deep/file.txt": "whole dir gone in new\n",
            "dir/sub.txt": "sub\n",
            "run.sh": "#!/bin/sh\necho old\n",
        },
        "old",
    )
    (remote.work / "run.sh").chmod(0o755)
    (remote.work / "old_only.txt").unlink()
    shutil.rmtree(remote.work / "olddir")
    (remote.work / "link").symlink_to("dir/sub.txt")
    new = remote.commit({"keep.txt": "new keep\n", "dir/new.txt": "new\n"}, "new")
    remote.tag("v2.0")
    remote.push()

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "sentinel").write_text("must survive")

    repo = DulwichSourceRepo(str(controller_path), url=remote.url)
    repo.reset_to(old)
    assert repo.current_commit() == old
    assert (controller_path / "old_only.txt").exists()
    assert git(controller_path, "status", "--porcelain", "--ignored") == ""

    # Make a mess: modified, untracked, ignored, nested, symlinked, read-only.
    (controller_path / "keep.txt").write_text("locally modified\n")
    (controller_path / "run.sh").chmod(0o644)
    (controller_path / "untracked.txt").write_text("x")
    (controller_path / "app.log").write_text("ignored")
    (controller_path / "build" / "obj").mkdir(parents=True)
    (controller_path / "build" / "obj" / "a.o").write_text("ignored dir")
    (controller_path / "dir" / "extra" / "deeper").mkdir(parents=True)
    (controller_path / "dir" / "extra" / "deeper" / "f").write_text("untracked in tracked dir")
    (controller_path / "dir" / "debug.log").write_text("ignored in tracked dir")
    (controller_path / "empty" / "nested").mkdir(parents=True)
    (controller_path / "escape").symlink_to(outside, target_is_directory=True)
    (controller_path / "dir" / "escape-file").symlink_to(outside / "sentinel")
    (controller_path / "olddir" / "deep" / "junk.log").write_text("ignored next to tracked")
    nested_repo = controller_path / "vendored"
    git(controller_path, "init", "-q", str(nested_repo))
    readonly = controller_path / "ro"
    (readonly / "inner").mkdir(parents=True)
    (readonly / "inner" / "f").write_text("x")
    (readonly / "inner").chmod(stat.S_IRUSR | stat.S_IXUSR)
    (controller_path / "dir" / "new.txt" / "obstacle").mkdir(parents=True)  # dir where a file goes

    repo.reset_to(new)

    assert git(controller_path, "status", "--porcelain", "--ignored", "--untracked-files=all") == ""
    assert git(controller_path, "rev-parse", "HEAD") == new
    assert git(controller_path, "symbolic-ref", "-q", "HEAD", check=False) == ""  # detached
    # reset_to(old) above detached HEAD instead of moving the clone's branch back.
    assert git(controller_path, "rev-parse", "refs/heads/main") == new
    assert repo.current_commit() == new
    assert (
        _tree_files(controller_path)
        == set(git(controller_path, "ls-files").splitlines())
        == {
            ".gitignore",
            "README",
            "app.py",
            "keep.txt",
            "dir/sub.txt",
            "dir/new.txt",
            "run.sh",
            "link",
        }
    )
    assert (controller_path / "keep.txt").read_text() == "new keep\n"
    assert os.access(controller_path / "run.sh", os.X_OK)
    assert os.readlink(controller_path / "link") == "dir/sub.txt"
    assert (controller_path / ".git").is_dir()
    assert (outside / "sentinel").read_text() == "must survive"
    assert git(controller_path, "fsck", "--no-progress") == ""

    # And back again: files tracked in the current commit but not in the target go, and an
    # untracked file where the target has a tracked one is replaced.
    (controller_path / "old_only.txt").write_text("untracked junk\n")
    (controller_path / "olddir").symlink_to(outside, target_is_directory=True)
    repo.reset_to(old)
    assert git(controller_path, "status", "--porcelain", "--ignored") == ""
    assert git(controller_path, "rev-parse", "HEAD") == old
    assert (controller_path / "old_only.txt").read_text() == "gone in new\n"
    assert not (controller_path / "dir" / "new.txt").exists()
    assert not (controller_path / "link").exists()
    assert (controller_path / "run.sh").read_text() == "#!/bin/sh\necho old\n"
    assert not (controller_path / "olddir").is_symlink()
    assert (controller_path / "olddir" / "deep" / "file.txt").is_file()
    assert sorted(p.name for p in outside.iterdir()) == ["sentinel"]  # nothing written through
    assert git(controller_path, "rev-parse", "refs/heads/main") == new


def test_reset_to_unknown_commit_fails_and_keeps_state(
    remote: Remote, controller_path: Path
) -> None:
    repo = DulwichSourceRepo(str(controller_path), url=remote.url)
    before = repo.current_commit()
    with pytest.raises(ResetFailed, match="no such commit"):
        repo.reset_to("0123456789abcdef0123456789abcdef01234567")
    with pytest.raises(ResetFailed, match="full commit hash"):
        repo.reset_to("v1.0")
    assert repo.current_commit() == before
    assert remote.git(controller_path, "status", "--porcelain", "--ignored") == ""
