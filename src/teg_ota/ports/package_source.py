"""PackageSource port: where a version's image comes from.

The domain asks two things of a source, in this order: which digest a version names now
(``resolve``: for git the 40-hex commit after a fetch), and the material to make the image
from (``stage``: a build context or an image archive). The digest becomes the image's
commit label, and verification checks the image carries it, whatever the source.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from teg_ota.domain.model.errors import (
    FetchFailed,
    PackageSourceError,
    ResetFailed,
    UnknownVersion,
)
from teg_ota.domain.model.package import BuildContext, ImageArchive, PackageRef, Staged

__all__ = [
    "BuildContext",
    "FetchFailed",
    "ImageArchive",
    "PackageRef",
    "PackageSource",
    "PackageSourceError",
    "ResetFailed",
    "Staged",
    "UnknownVersion",
]


class PackageSource(Protocol):
    def resolve(self, package: PackageRef) -> str:
        """The digest ``package`` names now (git: fetch, then the tag's or hash's commit).

        Raises :class:`FetchFailed` when the origin cannot be reached (transient: the
        caller may fall back to an image already built from it) and
        :class:`UnknownVersion` when the origin does not know the version.
        """
        ...

    def stage(
        self,
        package: PackageRef,
        digest: str,
        on_progress: Callable[[str], None] | None = None,
    ) -> Staged:
        """What the runtime makes the image from, exactly ``digest``. Raises
        :class:`PackageSourceError` (for git :class:`ResetFailed`)."""
        ...

    def release(self, staged: Staged) -> None:
        """Remove what :meth:`stage` made that is no longer needed once the image exists
        (a downloaded archive); a build context that stays is left alone."""
        ...
