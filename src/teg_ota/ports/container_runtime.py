"""ContainerRuntime port: the one controller container and its images.

The runtime is configured (by its adapter) with the container name, network mode,
privilege, restart policy, environment and mounts; the domain only says which image to run.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

VERSION_LABEL = "org.teg.controller.version"
COMMIT_LABEL = "org.teg.controller.commit"


class ContainerRuntimeError(Exception):
    """Base of the runtime's errors; messages are safe to show as ``sw_error``."""


class RuntimeUnavailable(ContainerRuntimeError):
    """The container engine cannot be reached (down, restarting, socket missing)."""


class BuildFailed(ContainerRuntimeError):
    """An image build failed; the message carries the engine's own error."""


class StartFailed(ContainerRuntimeError):
    """The controller container could not be created or started."""


class StopFailed(ContainerRuntimeError):
    """The controller container could not be stopped."""


class Health(enum.StrEnum):
    NONE = "none"
    """The image has no HEALTHCHECK: running is all there is to know."""
    STARTING = "starting"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


@dataclass(frozen=True, slots=True)
class ControllerState:
    """What the engine says about the controller container right now."""

    exists: bool
    running: bool = False
    version: str | None = None
    """From the image's version label, else parsed from the image name (old gateway)."""
    image: str | None = None
    started_at_ms: int | None = None
    health: Health = Health.NONE
    exit_code: int | None = None


@dataclass(frozen=True, slots=True)
class ControllerExit:
    """Why the controller stopped being a healthy running container."""

    exit_code: int | None
    unhealthy: bool = False

    def describe(self) -> str:
        if self.unhealthy:
            return "turned unhealthy"
        if self.exit_code is None:
            return "stopped"
        return f"exited with code {self.exit_code}"


@dataclass(frozen=True, slots=True)
class ImageInfo:
    tag: str
    created_at: float
    """Unix seconds."""
    labels: Mapping[str, str] = field(default_factory=dict)
    size_bytes: int = 0


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

        Raises :class:`BuildFailed` with the engine's message.
        """
        ...

    def run_controller(self, tag: str, labels: Mapping[str, str]) -> None:
        """Create and start the controller from ``tag``, replacing a stopped container of the
        same name. Raises :class:`StartFailed`."""
        ...

    def stop_controller(self, grace_s: float) -> None:
        """Stop the controller (SIGTERM, then SIGKILL after ``grace_s``); no-op if stopped."""
        ...

    def wait_for_exit(self, timeout_s: float) -> ControllerExit | None:
        """Block until the controller exits or turns unhealthy, at most ``timeout_s``.

        Returns ``None`` when it is still running at the deadline. Event-driven, not polled.
        """
        ...

    def prune_stopped_containers(self) -> int:
        """Remove stopped containers; returns how many were removed."""
        ...

    def list_controller_images(self) -> Sequence[ImageInfo]: ...

    def remove_image(self, tag: str) -> None: ...

    def free_disk_bytes(self) -> int:
        """Free space where the engine stores images (its data root)."""
        ...
