"""A sample controller Git repository for end-to-end tests and the demo (no pytest here).

:func:`make_controller_repo` builds, with the ``git`` command line, a bare "remote" (what
``TEG_CONTROLLER_GIT_URL`` points at; the runner clones it into ``CONTROLLER_GIT_PATH``) and a
work clone used to add commits and tags. Every version is one commit on ``main`` holding a
``Dockerfile`` (``FROM teg-ota-test-busybox:latest``), a ``controller.sh`` and a ``VERSION``
file. The standard tags:

* ``v1.0``, ``v1.1`` (annotated): good controllers; print their version, run until SIGTERM
  (exit 0 within a fraction of a second);
* ``v2.0-broken``: builds, starts, exits with code 3 after about a second;
* ``v3.0-badbuild``: a ``RUN`` step fails, so the image build fails.

More can be added later with :meth:`ControllerRepo.add_version` (``slowbuild``: a ``RUN
sleep`` step, to interrupt a build) and :meth:`ControllerRepo.add_commit` (a commit without
a tag). Images built from it need the local base image ``teg-ota-test-busybox:latest``
(scripts/build-test-images.sh).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

BASE_IMAGE = "teg-ota-test-busybox:latest"

Kind = Literal["good", "broken", "badbuild", "slowbuild"]

STANDARD_VERSIONS: tuple[tuple[str, Kind], ...] = (
    ("v1.0", "good"),
    ("v1.1", "good"),
    ("v2.0-broken", "broken"),
    ("v3.0-badbuild", "badbuild"),
)

_GIT_ENV = {
    "GIT_AUTHOR_NAME": "teg-ota tests",
    "GIT_AUTHOR_EMAIL": "tests@teg-ota.invalid",
    "GIT_COMMITTER_NAME": "teg-ota tests",
    "GIT_COMMITTER_EMAIL": "tests@teg-ota.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
}

_GOOD_SCRIPT = """\
#!/bin/sh
# TEG controller stand-in {version}: runs until SIGTERM.
trap 'echo "controller {version}: SIGTERM, exiting"; exit 0' TERM INT
echo "controller {version} running"
while true; do
    sleep 1 &
    wait $!
done
"""

_BROKEN_SCRIPT = """\
#!/bin/sh
# TEG controller stand-in {version}: crashes shortly after start.
echo "controller {version} starting"
sleep 1
echo "controller {version}: fatal error, exiting with code {exit_code}" >&2
exit {exit_code}
"""

SAMPLE_LABEL = "org.teg.e2e.sample-controller"
"""On every image layer built from this repository, so that the layers an interrupted build
leaves behind (dangling images) can be found and removed: :func:`remove_dangling_layers`."""

_DOCKERFILE = """\
FROM {base}
LABEL {label}=1
COPY VERSION controller.sh /
{extra}CMD ["/bin/sh", "/controller.sh"]
"""


def controller_files(
    version: str, kind: Kind = "good", *, build_sleep_s: float = 8, exit_code: int = 3
) -> dict[str, str]:
    """The files of one controller version (path -> content)."""
    extra = ""
    if kind == "badbuild":
        extra = f'RUN echo "compiling {version}" && exit 7\n'
    elif kind == "slowbuild":
        extra = f'RUN echo "compiling {version} slowly" && sleep {build_sleep_s:g}\n'
    script = _BROKEN_SCRIPT if kind == "broken" else _GOOD_SCRIPT
    return {
        "Dockerfile": _DOCKERFILE.format(base=BASE_IMAGE, label=SAMPLE_LABEL, extra=extra),
        "controller.sh": script.format(version=version, exit_code=exit_code),
        "VERSION": version + "\n",
    }


def remove_dangling_layers(client: Any) -> int:
    """Remove the untagged layers that interrupted builds of sample controllers left (a
    ``docker.DockerClient``); layers still in use are left alone. Returns how many went."""
    removed = 0
    for image in client.api.images(filters={"dangling": True, "label": SAMPLE_LABEL}):
        # In use, or already gone: not ours to force.
        with contextlib.suppress(Exception):
            client.api.remove_image(image["Id"], force=False)
            removed += 1
    return removed


def git(*args: str, cwd: Path | None = None) -> str:
    """Run ``git`` (no system/global surprises: fixed identity, no prompts); stdout."""
    env = {**os.environ, **_GIT_ENV}
    proc = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc.stdout.strip()


@dataclass
class ControllerRepo:
    root: Path
    remote: Path
    """The bare repository: ``TEG_CONTROLLER_GIT_URL``."""
    work: Path
    commits: dict[str, str] = field(default_factory=dict)
    """Tag -> the full commit hash it names (peeled)."""

    @property
    def url(self) -> str:
        return str(self.remote)

    def commit_of(self, tag: str) -> str:
        return self.commits[tag]

    def _commit_files(self, files: dict[str, str], message: str) -> str:
        for name, content in files.items():
            path = self.work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
            if name.endswith(".sh"):
                path.chmod(0o755)
        git("add", "-A", cwd=self.work)
        git("commit", "-q", "--allow-empty", "-m", message, cwd=self.work)
        commit = git("rev-parse", "HEAD", cwd=self.work)
        git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=self.work)
        return commit

    def add_commit(self, version_text: str, kind: Kind = "good", message: str | None = None) -> str:
        """A new commit on ``main`` without a tag (pushed); returns its hash. ``version_text``
        is what the controller prints (the runner names it by the commit hash)."""
        files = controller_files(version_text, kind)
        return self._commit_files(files, message or f"controller {version_text} (untagged)")

    def add_version(
        self,
        tag: str,
        kind: Kind = "good",
        *,
        annotated: bool = False,
        build_sleep_s: float = 8,
        exit_code: int = 3,
    ) -> str:
        """Commit a controller of ``kind`` on ``main``, tag it ``tag``, push both; returns
        the commit hash."""
        files = controller_files(tag, kind, build_sleep_s=build_sleep_s, exit_code=exit_code)
        commit = self._commit_files(files, f"controller {tag} ({kind})")
        self.tag(tag, commit, annotated=annotated)
        return commit

    def tag(self, tag: str, commit: str, *, annotated: bool = False) -> None:
        """Tag an existing commit (moving the tag if it exists) and push the tag."""
        if annotated:
            git("tag", "-f", "-a", "-m", f"release {tag}", tag, commit, cwd=self.work)
        else:
            git("tag", "-f", tag, commit, cwd=self.work)
        git("push", "-q", "-f", "origin", f"refs/tags/{tag}", cwd=self.work)
        self.commits[tag] = commit

    def export(self, tag: str, directory: Path) -> Path:
        """The files of ``tag`` written to ``directory`` (a docker build context)."""
        directory.mkdir(parents=True, exist_ok=True)
        for name in ("Dockerfile", "controller.sh", "VERSION"):
            content = git("show", f"{self.commits[tag]}:{name}", cwd=self.work)
            (directory / name).write_text(content + "\n")
        return directory


def make_controller_repo(root: Path) -> ControllerRepo:
    """Bare remote ``root/controller.git`` + work clone ``root/controller-work`` with the
    standard tags (see the module docstring)."""
    root.mkdir(parents=True, exist_ok=True)
    remote = root / "controller.git"
    work = root / "controller-work"
    git("init", "-q", "--bare", "--initial-branch=main", str(remote))
    git("init", "-q", "--initial-branch=main", str(work))
    git("remote", "add", "origin", str(remote), cwd=work)
    repo = ControllerRepo(root=root, remote=remote, work=work)
    for tag, kind in STANDARD_VERSIONS:
        repo.add_version(tag, kind, annotated=tag == "v1.1")
    return repo
