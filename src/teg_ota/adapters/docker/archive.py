"""``docker save`` archives, read here before the engine sees a byte of them.

An archive is a plain tar, or a gzip- or zstd-compressed one (told apart by magic bytes, not
by the file name). :func:`read_archive` walks the whole archive once and accepts it only
when its ``manifest.json`` names exactly one image whose config and layers are all in it,
so a file that is no image, holds several, or is truncated or corrupt is refused before
anything reaches the engine. :func:`untagged_tar` then streams the decompressed archive
again, without the image names it carries (``RepoTags``, ``repositories``): ``docker load``
would otherwise create those tags, foreign names that could even move an existing local
tag. Decompressing twice costs time, not disk: nothing is ever unpacked to a file.
"""

from __future__ import annotations

import gzip
import importlib
import io
import json
import re
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any, cast

from teg_ota.domain.model.errors import BuildFailed

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_CHUNK = 1 << 20
_MAX_MANIFEST_BYTES = 1 << 20
"""A real manifest is a few hundred bytes per image; more is not an archive we made."""
_MANIFEST = "manifest.json"
_REPOSITORIES = "repositories"
_CONFIG_ID_RE = re.compile(r"(?:blobs/sha256/)?(?P<hex>[0-9a-f]{64})(?:\.json)?")

_CORRUPT: tuple[type[BaseException], ...] = (
    tarfile.TarError,
    OSError,  # gzip.BadGzipFile is one
    EOFError,  # a truncated gzip stream
    zlib.error,
    ValueError,  # what zstandard raises (ZstdError), and bad tar numbers
)


@dataclass(frozen=True, slots=True)
class ArchivedImage:
    """The one image an archive holds, as its manifest describes it."""

    config: str
    """The archive member holding the image config (``<hex>.json``, or an OCI blob)."""
    layers: tuple[str, ...]
    repo_tags: tuple[str, ...]
    manifest: bytes
    """The manifest as read, to check that the second pass reads the same archive."""

    @property
    def image_id(self) -> str | None:
        """The image's id as the engine will know it, when the config's name says so."""
        match = _CONFIG_ID_RE.fullmatch(self.config)
        return f"sha256:{match['hex']}" if match else None


def _zstd_reader(raw: IO[bytes]) -> IO[bytes]:
    """A decompressing reader, when the optional ``zstandard`` module is installed."""
    try:
        zstandard: Any = importlib.import_module("zstandard")
    except ImportError as exc:
        raise BuildFailed(
            "the image archive is zstd-compressed, and this gateway cannot decompress zstd "
            "(install the Python package 'zstandard', or ship the archive gzip-compressed)"
        ) from exc
    reader: IO[bytes] = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    return reader


@contextmanager
def _decompressed(path: str) -> Iterator[IO[bytes]]:
    try:
        raw: IO[bytes] = open(path, "rb")  # noqa: SIM115 - closed below, also on errors
    except OSError as exc:
        raise BuildFailed(f"cannot read the image archive {path!r}: {exc.strerror}") from exc
    try:
        magic = raw.read(len(_ZSTD_MAGIC))
        raw.seek(0)
        if magic.startswith(_GZIP_MAGIC):
            with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
                yield cast(IO[bytes], unzipped)
        elif magic == _ZSTD_MAGIC:
            with _zstd_reader(raw) as stream:
                yield stream
        else:
            yield raw
    finally:
        raw.close()


def _member_problem(member: tarfile.TarInfo) -> str | None:
    name = member.name
    if name.startswith("/") or ".." in name.split("/"):
        return f"unsafe member name {name[:100]!r}"
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        return f"unexpected member type for {name[:100]!r}"
    return None


def _read_manifest(data: bytes, names: set[str]) -> ArchivedImage:
    try:
        manifest = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BuildFailed("the image archive's manifest.json is not valid JSON") from exc
    if not isinstance(manifest, list) or not all(isinstance(e, dict) for e in manifest):
        raise BuildFailed("the image archive's manifest.json is not a list of images")
    if len(manifest) != 1:
        count = "no image" if not manifest else f"{len(manifest)} images"
        raise BuildFailed(f"the image archive holds {count}; exactly one is expected")
    entry = manifest[0]
    config, layers, tags = entry.get("Config"), entry.get("Layers"), entry.get("RepoTags") or []
    if not isinstance(config, str) or not isinstance(layers, list) or not isinstance(tags, list):
        raise BuildFailed("the image archive's manifest.json does not describe an image")
    missing = [str(m) for m in (config, *layers) if not isinstance(m, str) or m not in names]
    if missing:
        raise BuildFailed(
            f"the image archive is incomplete: {len(missing)} file(s) its manifest names are "
            f"missing, e.g. {missing[0][:100]!r}"
        )
    return ArchivedImage(
        config=config,
        layers=tuple(layers),
        repo_tags=tuple(str(t) for t in tags),
        manifest=data,
    )


def read_archive(path: str) -> ArchivedImage:
    """The one image the archive at ``path`` holds; :class:`BuildFailed` for anything else."""
    names: set[str] = set()
    manifest: bytes | None = None
    try:
        with _decompressed(path) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                problem = _member_problem(member)
                if problem is not None:
                    raise BuildFailed(f"the image archive is not a docker image: {problem}")
                names.add(member.name)
                data = tar.extractfile(member) if member.isfile() else None
                if member.name == _MANIFEST and data is not None:
                    if member.size > _MAX_MANIFEST_BYTES:
                        raise BuildFailed("the image archive's manifest.json is too large")
                    manifest = data.read()
                elif data is not None:
                    while data.read(_CHUNK):  # decompress and check every byte
                        pass
    except BuildFailed:
        raise
    except _CORRUPT as exc:
        raise BuildFailed(
            f"the image archive is corrupt or not a (gzip/zstd-compressed) tar: "
            f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        ) from exc
    if manifest is None:
        raise BuildFailed(
            "the image archive holds no image (no manifest.json: not a 'docker save' archive)"
        )
    return _read_manifest(manifest, names)


def _untagged_manifest(data: bytes) -> bytes:
    manifest = json.loads(data)
    for entry in manifest:
        entry["RepoTags"] = None
    return json.dumps(manifest).encode()


def _member_bytes(member: tarfile.TarInfo, data: IO[bytes] | None) -> Iterator[bytes]:
    yield member.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    if data is None or member.size == 0:
        return
    left = member.size
    while left > 0:
        chunk = data.read(min(_CHUNK, left))
        if not chunk:
            raise BuildFailed("the image archive changed while it was being loaded")
        left -= len(chunk)
        yield chunk
    yield b"\0" * (-member.size % tarfile.BLOCKSIZE)


def untagged_tar(path: str, image: ArchivedImage) -> Iterator[bytes]:
    """The archive :func:`read_archive` accepted as ``image``, decompressed, without names.

    Streamed in chunks (an HTTP request body), so no copy of the archive is ever made.
    """
    try:
        with _decompressed(path) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                if member.name == _REPOSITORIES:
                    continue
                data = tar.extractfile(member) if member.isfile() else None
                if member.name == _MANIFEST and data is not None:
                    if data.read(_MAX_MANIFEST_BYTES + 1) != image.manifest:
                        raise BuildFailed("the image archive changed while it was being loaded")
                    untagged = _untagged_manifest(image.manifest)
                    member.size = len(untagged)
                    yield from _member_bytes(member, io.BytesIO(untagged))
                    continue
                yield from _member_bytes(member, data)
    except BuildFailed:
        raise
    except _CORRUPT as exc:
        raise BuildFailed("the image archive changed while it was being loaded") from exc
    yield b"\0" * (2 * tarfile.BLOCKSIZE)
