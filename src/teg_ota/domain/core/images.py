"""Which controller images to keep after a successful update, and which to remove."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from teg_ota.domain.model.controller import ImageInfo


def images_to_remove(
    images: Sequence[ImageInfo], keep: Iterable[str], keep_older: int
) -> list[str]:
    """Tags to remove: every image not in ``keep`` (the running, the previous and the
    known-good one) beyond the ``keep_older`` newest others."""
    kept = set(keep)
    others = sorted(
        (image for image in images if image.tag not in kept),
        key=lambda image: image.created_at,
        reverse=True,
    )
    return [image.tag for image in others[keep_older:]]
