"""Which strings may name a controller version, and how a version maps to an image name.

Versions arrive from the network (ThingsBoard attributes), and end up in Git ref lookups
and Docker image names, so they are validated here once, conservatively, before any
adapter sees them.

Image naming (documented in docs/architecture.md):

* A version that is already a valid Docker repository path component and does not start
  with the escape marker ``x--`` is used as is: ``teg-controller-v1.2.3:latest``, exactly
  as the seed's gateway named its images.
* Any other version (upper case, ``/``, ``+``, ``__`` runs, a leading ``x--``) is encoded as
  ``x--`` followed by the unpadded lower-case RFC 4648 base32 of its UTF-8 bytes, e.g.
  ``Release/1.0`` -> ``teg-controller-x--kjswyzlbonss6mjoga:latest``.

The two sets are disjoint (plain names never start with ``x--``; base32 is injective), so no
two versions share an image name, and :func:`version_from_image` reverses the mapping.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from dataclasses import dataclass

from teg_ota.domain.model.errors import InvalidVersion

MAX_TAG_LENGTH = 128
"""Long enough for any release naming scheme; short enough that the encoded image name fits
Docker's 255-character limit with a prefix of up to 40 characters."""

MAX_IMAGE_NAME_LENGTH = 255
IMAGE_TAG = "latest"
ENCODED_MARKER = "x--"

_COMMIT_RE = re.compile(r"[0-9a-fA-F]{40}")
_TAG_CHARS_RE = re.compile(r"[A-Za-z0-9._+/-]+")
_DOCKER_COMPONENT_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_BASE32_LOWER_RE = re.compile(r"[a-z2-7]+")


class VersionKind(enum.Enum):
    COMMIT = "commit"
    TAG = "tag"


@dataclass(frozen=True, slots=True)
class Version:
    """A validated version: a full lower-case commit hash, or a Git tag name."""

    value: str
    kind: VersionKind

    def __str__(self) -> str:
        return self.value

    @property
    def is_commit(self) -> bool:
        return self.kind is VersionKind.COMMIT


def _shown(raw: str) -> str:
    """A short, printable rendering of untrusted input for an error message."""
    printable = "".join(ch if ch.isprintable() and ch.isascii() else "?" for ch in raw[:40])
    return printable + ("..." if len(raw) > 40 else "")


def parse_version(raw: object) -> Version:
    """Validate a requested version; raise :class:`InvalidVersion` with an operator message.

    A 40-hex string is a commit (abbreviated hashes are refused: they are ambiguous and can
    collide with tag names). Everything else must be an acceptable tag: Git's ref-name rules
    (``git check-ref-format``) narrowed to an ASCII allow-list, so nothing that reaches git
    or Docker can be read as an option, a path escape or a revision expression.
    """
    if not isinstance(raw, str):
        raise InvalidVersion(f"version must be a string, got {type(raw).__name__}")
    if raw == "":
        raise InvalidVersion("version is empty")
    if len(raw) > MAX_TAG_LENGTH:
        raise InvalidVersion(
            f"version is {len(raw)} characters long; at most {MAX_TAG_LENGTH} are accepted"
        )
    if _COMMIT_RE.fullmatch(raw):
        return Version(raw.lower(), VersionKind.COMMIT)
    problem = _tag_problem(raw)
    if problem is not None:
        raise InvalidVersion(f"invalid version {_shown(raw)!r}: {problem}")
    return Version(raw, VersionKind.TAG)


def _tag_problem(tag: str) -> str | None:
    if tag.startswith("-"):
        return "must not start with '-'"
    if not _TAG_CHARS_RE.fullmatch(tag):
        return "only letters, digits and . _ + / - are allowed (a tag or a full 40-hex commit)"
    if ".." in tag:
        return "must not contain '..'"
    if tag.startswith("/") or tag.endswith("/") or "//" in tag:
        return "must not start or end with '/' or contain '//'"
    if tag.endswith("."):
        return "must not end with '.'"
    if tag.endswith(".lock"):
        return "must not end with '.lock'"
    for component in tag.split("/"):
        if component.startswith("."):
            return "no path component may start with '.'"
        if component.endswith(".lock"):
            return "no path component may end with '.lock'"
    if tag == "HEAD" or tag.startswith(("refs/", "HEAD/")):
        return "must be a tag name, not a ref path"
    return None


def image_repository(prefix: str, version: Version) -> str:
    """The image repository (without ``:latest``) for a version."""
    value = version.value
    if _DOCKER_COMPONENT_RE.fullmatch(value) and not value.startswith(ENCODED_MARKER):
        component = value
    else:
        encoded = base64.b32encode(value.encode("utf-8")).decode("ascii")
        component = ENCODED_MARKER + encoded.rstrip("=").lower()
    name = prefix + component
    if len(name) > MAX_IMAGE_NAME_LENGTH:
        raise InvalidVersion(
            f"version {_shown(value)!r} gives an image name longer than "
            f"{MAX_IMAGE_NAME_LENGTH} characters"
        )
    return name


def image_tag(prefix: str, version: Version) -> str:
    """``<prefix><version>:latest``, the seed's image naming, encoded where Docker needs it."""
    return f"{image_repository(prefix, version)}:{IMAGE_TAG}"


def version_from_image(prefix: str, image: str) -> str | None:
    """Reverse of :func:`image_tag`: the version an image name stands for, or ``None``.

    Accepts ``name``, ``name:tag`` and a registry-qualified ``host/name:tag`` as Docker
    reports them; returns ``None`` for names that are not controller images.
    """
    repository = image.rsplit("@", 1)[0]
    last_slash = repository.rfind("/")
    colon = repository.rfind(":")
    if colon > last_slash:
        repository = repository[:colon]
    name = repository.rsplit("/", 1)[-1]
    if not name.startswith(prefix) or len(name) == len(prefix):
        return None
    component = name[len(prefix) :]
    if component.startswith(ENCODED_MARKER):
        payload = component[len(ENCODED_MARKER) :]
        if not _BASE32_LOWER_RE.fullmatch(payload):
            return None
        padded = payload.upper() + "=" * (-len(payload) % 8)
        try:
            candidate = base64.b32decode(padded).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
    else:
        candidate = component
    # Only names image_tag itself produces map back: anything else (a non-canonical
    # encoding, an invalid version smuggled into a name) is not a controller image.
    try:
        canonical = image_repository(prefix, parse_version(candidate))
    except InvalidVersion:
        return None
    return candidate if canonical == name else None


def normalised(raw: object) -> str | None:
    """The canonical form of a version (a commit in lower case), or ``None`` when ``raw`` is
    not a valid version: the one normalisation every store and service uses."""
    try:
        return parse_version(raw).value
    except InvalidVersion:
        return None
