"""Real Git repositories for the git adapter's tests, with the ``git`` CLI as fixture builder
and oracle (no pytest here; each test module declares the few fixtures it uses).

Layout per test: ``remote.git`` (bare), ``work`` (a clone that commits, tags and pushes), and
``controller`` (what the adapter clones and manages). No Docker needed.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from loguru import logger


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


def make_remote(base: Path) -> Remote:
    """A remote with one commit (``app.py``, ``README``) tagged ``v1.0`` (lightweight)."""
    r = Remote(base)
    r.first = r.commit({"app.py": "print('v1')\n", "README": "controller\n"}, "first")
    r.tag("v1.0")
    r.push()
    return r


def make_remote_with_history(base: Path) -> Remote:
    """:func:`make_remote` plus a merge of a second branch (``side``, pushed too), an
    annotated tag ``v2.0``, a lightweight tag ``release`` and a nested directory: the shapes
    a clone or a fetch must carry over whole."""
    remote = make_remote(base)
    remote.commit({"lib/core/a.py": "a = 1\n"}, "lib")
    remote.git(remote.work, "checkout", "-q", "-b", "side")
    remote.commit({"lib/core/b.py": "b = 1\n"}, "side")
    remote.git(remote.work, "checkout", "-q", "main")
    remote.commit({"docs/readme.md": "docs\n"}, "docs")
    remote.git(remote.work, "merge", "-q", "--no-edit", "side")
    remote.tag("v2.0", annotated=True)
    remote.tag("release")
    remote.git(remote.work, "push", "-q", "origin", "main", "side")
    remote.push()
    return remote


def assert_fsck_clean(remote: Remote, repo_dir: Path) -> None:
    """``git fsck --full``: every object a ref reaches is there and sound."""
    assert remote.git(repo_dir, "fsck", "--full", "--no-progress", "--no-dangling") == ""


PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY")
"""Unset in every test: a proxy would swallow the requests to the local HTTP remote."""


@contextmanager
def captured_logs() -> Iterator[list[str]]:
    """Every message teg_ota logs meanwhile (TRACE and up), to assert none holds a secret."""
    lines: list[str] = []
    logger.enable("teg_ota")
    sink = logger.add(lambda m: lines.append(str(m)), level="TRACE", format="{message}")
    try:
        yield lines
    finally:
        logger.remove(sink)


def tree_files(root: Path) -> set[str]:
    """The work tree's files, symlinks and empty directories (``dir/``), ``.git`` left out."""
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
