"""Where in the staged work tree the controller image is built from: the build context and
its Dockerfile (``TEG_CONTROLLER_BUILD_CONTEXT``, ``TEG_CONTROLLER_DOCKERFILE``).

Default (no context set): the original TEG gateway's layout, ``docker/`` as the context,
when the commit has ``docker/<Dockerfile>``; else the work tree's root. The choice is logged
once per process (again only when a later commit makes another choice).

Both paths must resolve inside the work tree: a symbolic link in the commit cannot make the
build read (or send the engine) anything outside the repository.

A commit without the Dockerfile (or the context) fails before anything is sent to the engine,
so before the swap, with a message naming the path looked for (relative to the repository).
Whom that failure blames (``core.failures``):

* default layout, neither ``docker/<Dockerfile>`` nor ``<Dockerfile>`` there: the version's
  fault (:class:`DockerfileMissing`, remembered: the commit cannot be built as it is; like
  every remembered failure it stops counting once a build setting changes, the settings'
  fingerprint being part of the record: ``app/fingerprint.py``);
* the context or the Dockerfile set explicitly (a context, or a Dockerfile other than
  ``Dockerfile``) and missing: most likely the gateway's setting is wrong, so the failure is
  not held against the version (:class:`BuildSettingMissing`, a ``GatewayFault``): fix the
  setting and assign the same version again. Should the commit really be at fault, re-sending
  it only fails again at once, before anything is built.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from loguru import logger

from teg_ota.domain.model.errors import BuildFailed, BuildSettingMissing, DockerfileMissing

ORIGINAL_CONTEXT = "docker"
"""The original gateway's build context, relative to the work tree."""
DEFAULT_DOCKERFILE = "Dockerfile"
_HINT = "set TEG_CONTROLLER_DOCKERFILE / TEG_CONTROLLER_BUILD_CONTEXT"


@dataclass(frozen=True, slots=True)
class ChosenBuild:
    """What one build uses."""

    context_dir: str
    """Absolute, symbolic links resolved; inside the work tree."""
    dockerfile: str
    """Relative to ``context_dir`` (POSIX); an absolute path (inside the work tree) when the
    Dockerfile resolves outside the context: its text is then sent along with the context."""
    context: str
    """The context relative to the work tree (``.`` or ``docker``), for the log."""
    path: str
    """The Dockerfile relative to the work tree, for the log."""


def repo_path(context: str, dockerfile: str) -> str:
    """``dockerfile`` in ``context`` as a path relative to the repository."""
    return str(PurePosixPath(context) / dockerfile)


class BuildLayout:
    """Chooses the context and the Dockerfile in a staged work tree (one per runtime)."""

    def __init__(self, context: str | None = None, dockerfile: str = DEFAULT_DOCKERFILE) -> None:
        self._context = context
        self._dockerfile = dockerfile or DEFAULT_DOCKERFILE
        self._logged: tuple[str, str] | None = None
        self._lock = threading.Lock()

    @property
    def explicit(self) -> bool:
        """A path was set on the gateway (the blame of a missing Dockerfile depends on it)."""
        return self._context is not None or self._dockerfile != DEFAULT_DOCKERFILE

    def choose(self, work_tree: str, commit: str | None = None) -> ChosenBuild:
        """The context and Dockerfile of the commit staged in ``work_tree``.

        Raises :class:`DockerfileMissing` (or :class:`BuildSettingMissing` when the paths
        were set explicitly), and :class:`BuildFailed` for a path resolving outside the work
        tree or a work tree that is not a directory.
        """
        if not os.path.isdir(work_tree):
            raise BuildFailed(f"build context {work_tree!r} is not a directory")
        root = Path(work_tree).resolve()
        where = f"commit {commit[:12]}" if commit else "the work tree"
        missing = BuildSettingMissing if self.explicit else DockerfileMissing
        if self._context is None:
            original = repo_path(ORIGINAL_CONTEXT, self._dockerfile)
            context = ORIGINAL_CONTEXT if (root / original).is_file() else "."
            if not (root / context / self._dockerfile).is_file():
                raise missing(
                    f"neither {original} nor {repo_path('.', self._dockerfile)} found in "
                    f"{where}; {_HINT}"
                )
        else:
            context = self._context
            _inside(root, context, self._dockerfile, where)  # before looking at anything
            context_path = root / context
            if not context_path.is_dir():
                what = "not a directory" if context_path.exists() else "not found"
                raise missing(f"build context {context}/ {what} in {where}; {_HINT}")
            path = repo_path(context, self._dockerfile)
            if not (context_path / self._dockerfile).is_file():
                raise missing(f"{path} not found in {where}; {_HINT}")
        chosen = _inside(root, context, self._dockerfile, where)
        self._log_once(chosen)
        return chosen

    def _log_once(self, chosen: ChosenBuild) -> None:
        key = (chosen.context, chosen.path)
        with self._lock:
            if self._logged == key:
                return
            self._logged = key
        if self._context is not None:
            why = "TEG_CONTROLLER_BUILD_CONTEXT"
        elif chosen.context == ORIGINAL_CONTEXT:
            why = "the original gateway's layout"
        else:
            why = f"no {repo_path(ORIGINAL_CONTEXT, self._dockerfile)} in the work tree"
        logger.info(
            "building the controller with {} as the context and {} as the Dockerfile ({})",
            "the work tree" if chosen.context == "." else f"{chosen.context}/",
            chosen.path,
            why,
        )


def _inside(root: Path, context: str, dockerfile: str, where: str) -> ChosenBuild:
    """The chosen paths, resolved; both must stay inside the work tree ``root``."""
    context_dir = (root / context).resolve()
    dockerfile_path = (root / context / dockerfile).resolve()
    path = repo_path(context, dockerfile)
    for name, resolved in ((f"build context {context}/", context_dir), (path, dockerfile_path)):
        if not resolved.is_relative_to(root):
            raise BuildFailed(
                f"{name} in {where} resolves outside the repository (a symbolic link); refused"
            )
        if ".git" in resolved.relative_to(root).parts:
            # .git/config holds the remote's credentials: never a context, never a Dockerfile
            raise BuildFailed(f"{name} in {where} is inside .git; refused")
    if dockerfile_path.is_relative_to(context_dir):
        sent = dockerfile_path.relative_to(context_dir).as_posix()
    else:
        sent = str(dockerfile_path)  # inside the work tree, outside the context: sent inline
    return ChosenBuild(str(context_dir), sent, context, path)
