"""What the engine says about the controller container and its images: plain values."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

VERSION_LABEL = "org.teg.controller.version"
COMMIT_LABEL = "org.teg.controller.commit"


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
    commit: str | None = None
    """The commit/digest label of the container (what it was started from), if any."""
    image_id: str | None = None
    """The engine's id of the image the container runs (``sha256:...``)."""


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
