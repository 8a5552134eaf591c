"""ContainerRuntime port: the one controller container and its images.

The runtime is configured (by its adapter) with the container name, network mode,
privilege, restart policy, environment and mounts; the domain only says which image to run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from teg_ota.domain.model.controller import (
    COMMIT_LABEL,
    VERSION_LABEL,
    ControllerExit,
    ControllerState,
    Health,
    ImageInfo,
)
from teg_ota.domain.model.errors import (
    BuildFailed,
    ContainerRuntimeError,
    RuntimeUnavailable,
    StartFailed,
    StopFailed,
)

__all__ = [
    "COMMIT_LABEL",
    "VERSION_LABEL",
    "BuildFailed",
    "ContainerRuntime",
    "ContainerRuntimeError",
    "ControllerExit",
    "ControllerState",
    "Health",
    "ImageInfo",
    "RuntimeUnavailable",
    "StartFailed",
    "StopFailed",
]


class ContainerRuntime(Protocol):
    def controller_state(self) -> ControllerState:
        """Inspect the controller container. Raises :class:`RuntimeUnavailable`."""
        ...

    def image_exists(self, tag: str) -> bool: ...

    def image_labels(self, tag: str) -> Mapping[str, str] | None:
        """The labels of a local image, or ``None`` when the image does not exist."""
        ...

    def build_image(
        self,
        context_dir: str,
        tag: str,
        labels: Mapping[str, str],
        on_progress: Callable[[str], None] | None = None,
    ) -> None:
        """Build ``tag`` from ``context_dir``; stream log lines to ``on_progress``.

        ``context_dir`` is the staged source (the work tree); the adapter chooses the build
        context and Dockerfile in it from its own settings. Raises :class:`BuildFailed` with
        the engine's message (a :class:`~teg_ota.domain.model.errors.DockerfileMissing`
        naming the path looked for when the commit has no Dockerfile there).
        """
        ...

    def load_image(self, archive_path: str, tag: str, labels: Mapping[str, str]) -> None:
        """Load a ``docker save`` archive (optionally gzip/zstd-compressed) and tag its image
        as ``tag`` carrying ``labels``. Raises :class:`BuildFailed` when the archive holds no
        loadable image."""
        ...

    def run_controller(self, tag: str, labels: Mapping[str, str]) -> None:
        """Create and start the controller from ``tag``, replacing a stopped container of the
        same name. Raises :class:`StartFailed`."""
        ...

    def replace_controller(self, tag: str, labels: Mapping[str, str], grace_s: float) -> None:
        """Stop the running controller (as :meth:`stop_controller`) and start ``tag`` in its
        place, with nothing but the stop and the start between the old one's exit and the new
        one's start: the new container is created before the stop (a missing image fails
        with the old one still running) and takes the controller's name after its start.
        Raises :class:`StartFailed` or :class:`StopFailed`."""
        ...

    def prepare_restart(self) -> None:
        """The stopped controller's restart waits (the watchdog's backoff): make the restart
        cheaper by preparing its container now. Best effort; may do nothing. Raises
        :class:`ContainerRuntimeError`."""
        ...

    def discard_prepared(self) -> bool:
        """Remove what an interrupted swap may have left besides the controller (a
        prepared container, under its temporary name); True when there was one. Recovery
        calls it first. Raises :class:`ContainerRuntimeError`."""
        ...

    def stop_controller(self, grace_s: float) -> None:
        """Stop the controller (SIGTERM, then SIGKILL after ``grace_s``); no-op if stopped."""
        ...

    def last_output(self, lines: int) -> tuple[str, ...]:
        """The controller container's last ``lines`` lines of output (stdout and stderr),
        oldest first, without control characters; empty when there is no such container
        or its output cannot be read back. Raises :class:`RuntimeUnavailable`."""
        ...

    def wait_for_exit(self, timeout_s: float) -> ControllerExit | None:
        """Block until the controller exits or turns unhealthy, at most ``timeout_s``.

        Returns ``None`` when it is still running at the deadline. Event-driven, not polled.
        """
        ...

    def prune_stopped_containers(self) -> int:
        """Remove stopped containers (and a failed controller container kept for its logs:
        this is called after a success); returns how many were removed."""
        ...

    def list_controller_images(self) -> Sequence[ImageInfo]: ...

    def remove_image(self, tag: str) -> None: ...

    def tag_image(self, image: str, new_tag: str) -> None:
        """Give ``image`` (a controller tag, or an image id ``sha256:<64 hex>``) the name
        ``new_tag`` (kept when its tag is rebuilt: what a rollback to it starts)."""
        ...

    def free_disk_bytes(self) -> int:
        """Free space where the engine stores images (its data root)."""
        ...
