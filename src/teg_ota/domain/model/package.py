"""What ThingsBoard assigned, as a source sees it, and what a source hands the runtime.

A version names the controller; the package says where its image comes from. Git is the
first source (the version is a tag or commit, the image is built from a work tree); a
ThingsBoard package or a registry image are others. Every field ThingsBoard sends reaches
the source, so none is silently dropped on the way.
"""

from __future__ import annotations

from dataclasses import dataclass

from teg_ota.domain.model.versions import Version


@dataclass(frozen=True, slots=True)
class PackageRef:
    version: Version
    title: str | None = None
    url: str | None = None
    """``sw_url``: where a URL package lives (validated by the source that fetches it)."""
    checksum: str | None = None
    checksum_algorithm: str | None = None
    size: int | None = None
    tag: str | None = None


@dataclass(frozen=True, slots=True)
class BuildContext:
    """A directory the runtime builds the image from."""

    directory: str
    dockerfile: str | None = None
    """Relative to ``directory``; ``None``: the engine's default (``Dockerfile``)."""


@dataclass(frozen=True, slots=True)
class ImageArchive:
    """A ``docker save`` archive the runtime loads the image from."""

    path: str


Staged = BuildContext | ImageArchive
