"""Making the controller image: built from a context, or loaded from a ``docker save`` archive.

Nothing is ever pulled: the engine may only run images made on this machine.

The build context is the controller's Git work tree or a directory in it
(:mod:`.build_context` chooses it). Its ``.git/`` directory (which holds the remote URL,
credentials included, in ``.git/config``) is never sent to the engine: the context tar is
made here, with the context's ``.dockerignore`` patterns plus ``.git``. Build arguments are
sent, never logged: they may hold secrets, so their values are also blanked out of the build
output this forwards and of its error messages.

Docker cannot add labels to an image it loads, so a loaded image gets its labels (and its
name) from a build of ``FROM <loaded image id>`` with no context files; the labels travel in
the build request's ``labels`` parameter, which the engine applies verbatim (no Dockerfile
text is made from them, so nothing in a label can be read as an instruction).
"""

from __future__ import annotations

import io
import os
import re
import tarfile
import time
from collections.abc import Callable, Iterator, Mapping
from typing import IO

import docker
import docker.errors
import docker.utils.build
import requests
from docker.api.build import process_dockerfile
from loguru import logger

from teg_ota.adapters.docker.archive import read_archive, untagged_tar
from teg_ota.adapters.docker.client import Engine, bounded, cancellable, raise_on_error, short
from teg_ota.adapters.docker.validation import checked_labels, is_image_reference
from teg_ota.domain.model.errors import BuildFailed, ContainerRuntimeError, EngineDiskFull

_ALWAYS_EXCLUDED = (".git",)
"""Never part of a build context, whatever the context's ``.dockerignore`` says: the
repository's ``.git/config`` holds the remote URL with its credentials."""

_IMAGE_ID_RE = re.compile(r"sha256:[0-9a-f]{64}")
_LOADED_RE = re.compile(r"Loaded image(?P<by_id> ID)?: (?P<ref>\S+)")


def build_image(
    engine: Engine,
    context_dir: str,
    tag: str,
    labels: Mapping[str, str],
    timeout_s: float,
    on_progress: Callable[[str], None] | None = None,
    *,
    dockerfile: str | None = None,
    build_args: Mapping[str, str] | None = None,
) -> None:
    """Build ``tag`` from ``context_dir`` (never pulling), streaming the build log.

    ``dockerfile``: relative to ``context_dir`` (``None``: ``Dockerfile``), or an absolute
    path outside it, whose text is then sent along. The context sent to the engine is a tar
    made here, as ``docker build`` would make it (the ``.dockerignore`` of ``context_dir``
    honoured), except that ``.git`` is never in it. ``build_args`` are passed as
    ``--build-arg``s and never logged.
    The whole build is bounded by ``timeout_s``: at the deadline a timer thread closes the
    build's connection, which makes the engine cancel the build. A progress callback that
    raises is logged and not called again; the build goes on.
    """
    if not os.path.isdir(context_dir):
        raise BuildFailed(f"build context {context_dir!r} is not a directory")
    action = f"building {tag}"
    redact = _redactor(build_args or {})
    progress = _GuardedProgress(on_progress) if on_progress is not None else None
    logger.info("building image {} from {}", tag, context_dir)
    deadline = time.monotonic() + timeout_s
    # Made before talking to the engine: a context file that cannot be read is a
    # BuildFailed, not an unreachable engine.
    context, name = _build_context(context_dir, action, dockerfile)
    try:
        _build_from(
            engine,
            context,
            name,
            tag,
            labels,
            action,
            deadline,
            timeout_s,
            progress,
            build_args,
            redact,
        )
    except BuildFailed as exc:
        message = redact(str(exc))
        if message == str(exc):
            raise
        raise type(exc)(message) from None  # the original message holds a build argument
    finally:
        context.close()
    logger.info("built image {}", tag)


def load_image(
    engine: Engine, archive_path: str, tag: str, labels: Mapping[str, str], timeout_s: float
) -> None:
    """Load the one image of a ``docker save`` archive as ``tag``, carrying ``labels``.

    Labels and archive are checked before the engine is contacted. The engine loads the
    archive without the names it carries, so the only name the image gets is ``tag``; should
    the labelling build fail, the loaded image is removed again unless it was there before
    (it would be left dangling). Load and labelling together are bounded by ``timeout_s``.
    """
    wanted = checked_labels(labels)
    action = f"loading {tag} from {os.path.basename(archive_path)!r}"
    if not os.path.isfile(archive_path):
        raise BuildFailed(f"image archive {archive_path!r} is not a file")
    try:
        image = read_archive(archive_path)
    except BuildFailed as exc:
        raise BuildFailed(f"{action}: {exc}") from exc
    logger.info("loading image {} from {} (archived as {})", tag, archive_path, image.repo_tags)
    deadline = time.monotonic() + timeout_s
    archived = [name for name in image.repo_tags if is_image_reference(name)]
    with engine.session(action, BuildFailed) as client:
        known = image.image_id
        existed = known is None or _image_id(client, known) is not None
        named = {name for name in archived if _image_id(client, name) is not None}
        body = _prefixed(untagged_tar(archive_path, image), action)
        reported = _load(client, body, action, deadline, timeout_s)
        found = (_image_id(client, ref) for ref in (*reported, known) if is_image_reference(ref))
        loaded = next((image_id for image_id in found if image_id is not None), None)
        if loaded is None:
            raise BuildFailed(f"{action}: the engine loaded no image from the archive")
    try:
        context = _dockerfile_only(f"FROM {loaded}\n")
        _build_from(engine, context, None, tag, wanted, action, deadline, timeout_s, None)
    except BaseException:
        if not existed:
            _remove_quietly(engine, loaded)
        raise
    for name in set(reported) & (set(archived) - named - {tag}):
        _remove_quietly(engine, name)  # an engine that named the image anyway: untag
    logger.info("loaded image {} ({})", tag, loaded)


def _prefixed(chunks: Iterator[bytes], action: str) -> Iterator[bytes]:
    """``chunks``, with the action named in a failure (raised while the request is sent)."""
    try:
        yield from chunks
    except BuildFailed as exc:
        raise BuildFailed(f"{action}: {exc}") from exc


def _image_id(client: docker.DockerClient, ref: str) -> str | None:
    try:
        found = client.api.inspect_image(ref).get("Id")
    except docker.errors.NotFound:
        return None
    return found if isinstance(found, str) and _IMAGE_ID_RE.fullmatch(found) else None


def _load(
    client: docker.DockerClient,
    body: Iterator[bytes],
    action: str,
    deadline: float,
    timeout_s: float,
) -> list[str]:
    """Send the archive; the names and ids the engine says it loaded."""
    stream = cancellable(client.api.load_image(body, quiet=False))
    reported: list[str] = []
    with bounded(stream, deadline, action, timeout_s):
        for chunk in stream:
            raise_on_error(chunk, action, BuildFailed)
            text = chunk.get("stream") if isinstance(chunk, Mapping) else None
            for line in text.splitlines() if isinstance(text, str) else ():
                loaded = _LOADED_RE.fullmatch(line.strip())
                if loaded is not None:
                    reported.append(loaded["ref"])
    return reported


def _remove_quietly(engine: Engine, ref: str) -> None:
    """Remove what a load left behind, never masking why it is being removed."""
    try:
        with engine.session(f"removing {ref}") as client:
            client.api.remove_image(ref, force=False, noprune=False)
    except (ContainerRuntimeError, docker.errors.DockerException) as exc:
        logger.warning("could not remove {} after loading an image: {}", ref, exc)


def _dockerfile_only(text: str) -> IO[bytes]:
    """A build context holding nothing but a ``Dockerfile`` with ``text``."""
    context = io.BytesIO()
    data = text.encode()
    with tarfile.open(fileobj=context, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    return context


def _build_from(
    engine: Engine,
    context: IO[bytes],
    dockerfile: str | None,
    tag: str,
    labels: Mapping[str, str],
    action: str,
    deadline: float,
    timeout_s: float,
    progress: Callable[[str], None] | None,
    build_args: Mapping[str, str] | None = None,
    redact: Callable[[str], str] = str,
) -> None:
    with engine.session(action, BuildFailed) as client:
        try:
            chunks = client.api.build(
                fileobj=context,
                custom_context=True,
                dockerfile=dockerfile,
                tag=tag,
                labels=dict(labels),
                buildargs=dict(build_args) if build_args else None,
                decode=True,
                rm=True,
                forcerm=True,
                pull=False,
                timeout=timeout_s,
            )
        except requests.exceptions.Timeout as exc:
            raise BuildFailed(f"{action}: timed out after {timeout_s:g} s") from exc
        stream = cancellable(chunks)
        built = False
        with bounded(stream, deadline, action, timeout_s):
            try:
                for chunk in stream:
                    built = _handle_build_chunk(chunk, action, progress, redact) or built
            except BuildFailed as exc:
                if "no space left on device" in str(exc).lower():
                    raise EngineDiskFull(
                        f"{exc}: the engine's disk is full; free space on the gateway "
                        "(docker system prune, TEG_KEEP_OLDER_IMAGES) and assign again"
                    ) from exc
                raise
        if not built:
            try:
                present = client.api.inspect_image(tag) is not None
            except docker.errors.NotFound:
                present = False
            if not present:
                raise BuildFailed(f"{action}: the engine ended the build without an image")


def _handle_build_chunk(
    chunk: object,
    action: str,
    on_progress: Callable[[str], None] | None,
    redact: Callable[[str], str] = str,
) -> bool:
    """Log/forward one decoded build chunk (build argument values blanked out); raise on an
    error; True when it names the built image."""
    if not isinstance(chunk, Mapping):
        return False
    raise_on_error(chunk, action, BuildFailed)
    text = chunk.get("stream")
    if isinstance(text, str):
        for raw_line in text.splitlines():
            line = redact(raw_line.rstrip())
            if not line:
                continue
            logger.debug("build: {}", line)
            if on_progress is not None:
                on_progress(line)
    status = chunk.get("status")
    if isinstance(status, str) and status:
        logger.debug("build: {}", redact(status))
    aux = chunk.get("aux")
    return isinstance(aux, Mapping) and bool(aux.get("ID"))


def _dockerignore_patterns(context_dir: str) -> list[str]:
    """The context's ``.dockerignore`` patterns, read the way docker-py's ``build`` does."""
    path = os.path.join(context_dir, ".dockerignore")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        lines = [line.strip() for line in f.read().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


_REDACTED = "[build argument]"
_MIN_REDACTED = 4
"""Shorter values (``1``, ``on``) would blank out half the log and are hardly secrets."""


def _redactor(build_args: Mapping[str, str]) -> Callable[[str], str]:
    """A function blanking the build arguments' values out of a text (longest first)."""
    values = sorted(
        {value for value in build_args.values() if len(value) >= _MIN_REDACTED},
        key=len,
        reverse=True,
    )
    if not values:
        return str

    def redact(text: str) -> str:
        for value in values:
            text = text.replace(value, _REDACTED)
        return text

    return redact


def _build_context(
    context_dir: str, action: str, dockerfile_name: str | None = None
) -> tuple[IO[bytes], str | None]:
    """A tar of ``context_dir`` (``.dockerignore`` honoured, ``.git`` never included) and
    the Dockerfile name to pass along with it (``None``: the engine's default). A
    ``dockerfile_name`` outside the context (an absolute path) travels inside the tar."""
    try:
        patterns = _dockerignore_patterns(context_dir)
        dockerfile = process_dockerfile(dockerfile_name, context_dir)
        context: IO[bytes] = docker.utils.build.tar(
            context_dir,
            exclude=[*patterns, *_ALWAYS_EXCLUDED],
            dockerfile=dockerfile,
        )
    except (OSError, ValueError, tarfile.TarError) as exc:
        raise BuildFailed(f"{action}: cannot read the build context: {short(exc)}") from exc
    name = dockerfile[0]
    return context, name if isinstance(name, str) else None


class _GuardedProgress:
    """Calls the build's progress callback until it raises once; the build never fails
    because of it (a closed stdout raising ``BrokenPipeError`` is not the engine's fault)."""

    def __init__(self, callback: Callable[[str], None]) -> None:
        self._callback: Callable[[str], None] | None = callback

    def __call__(self, line: str) -> None:
        callback = self._callback
        if callback is None:
            return
        try:
            callback(line)
        except Exception as exc:  # noqa: BLE001 - whatever the callback does, the build goes on
            self._callback = None
            logger.warning(
                "build progress callback failed ({}: {}); no more build output is forwarded",
                type(exc).__name__,
                exc,
            )
