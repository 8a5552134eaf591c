"""What may be handed to the engine: image names and labels, checked before any call.

Tags and labels come from the domain, which validates versions; they are checked here again
because a name or label reaches the engine as an API parameter whose meaning the engine,
not teg-ota, decides: a tag outside the controller's prefix could replace another product's
image, and a label is copied into image metadata that tools and dashboards show.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TypeGuard

from teg_ota.adapters.docker.client import short
from teg_ota.adapters.docker.inspection import is_controller_tag
from teg_ota.domain.model.errors import BuildFailed, ContainerRuntimeError
from teg_ota.domain.model.versions import IMAGE_TAG

MAX_LABELS = 64
MAX_LABEL_KEY = 128
MAX_LABEL_VALUE = 1024

_LABEL_KEY_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._/-]*[A-Za-z0-9])?")
"""Docker's recommended label key form (reverse DNS, ``org.teg.controller.version``)."""
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME_TAG = r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
_REFERENCE_RE = re.compile(rf"sha256:[0-9a-f]{{64}}|{_COMPONENT}(?:/{_COMPONENT})*{_NAME_TAG}")
"""An image id, or a name in Docker's reference grammar (no registry port, no digest)."""
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
"""Characters that would split or hide text where a label value is shown (logs, tables)."""


def check_tag(image_prefix: str, tag: str, failure: type[ContainerRuntimeError]) -> None:
    """Refuse any image name but ``<prefix><version>:latest`` with ``failure``."""
    if not is_controller_tag(image_prefix, tag):
        raise failure(
            f"refusing image name {short(Exception(repr(tag)))}: "
            f"expected {image_prefix}<version>:{IMAGE_TAG}"
        )


def is_image_reference(ref: object) -> TypeGuard[str]:
    """``ref`` (an engine's or an archive's word, so untrusted) is safe to ask the engine about."""
    return isinstance(ref, str) and len(ref) <= 255 and _REFERENCE_RE.fullmatch(ref) is not None


def checked_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """``labels`` as a plain dict, or :class:`BuildFailed` naming the first bad one.

    Keys must have Docker's recommended form; values may hold any printable text (quotes
    included: the engine takes them verbatim) but no control characters such as newlines.
    """
    if len(labels) > MAX_LABELS:
        raise BuildFailed(f"refusing {len(labels)} image labels: at most {MAX_LABELS}")
    checked: dict[str, str] = {}
    for key, value in labels.items():
        if (
            not isinstance(key, str)
            or len(key) > MAX_LABEL_KEY
            or _LABEL_KEY_RE.fullmatch(key) is None
        ):
            raise BuildFailed(f"refusing image label key {short(Exception(repr(key)))}")
        if not isinstance(value, str) or len(value) > MAX_LABEL_VALUE:
            raise BuildFailed(f"refusing the value of image label {key}: not a short text")
        if _CONTROL_RE.search(value):
            raise BuildFailed(
                f"refusing the value of image label {key}: it contains control characters"
            )
        checked[key] = value
    return checked
