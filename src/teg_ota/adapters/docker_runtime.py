"""ContainerRuntime adapter on the Docker Engine API (Docker SDK for Python 7).

One process-wide SDK client per engine address, created lazily and shared by every
:class:`DockerRuntime`: creating it contacts the engine (API version negotiation), so a daemon
that is down at start-up does not prevent construction, only the calls made while it is down.
Every failure to reach the engine (socket missing, connection refused or dropped, read
timeouts, 5xx answers to read-only queries while the daemon restarts) becomes
:class:`RuntimeUnavailable`; a client whose connection failed is dropped from the cache and
recreated on the next call, so the same :class:`DockerRuntime` works again once the daemon is
back, without restarting the process.

Nothing is ever pulled: the engine may only run images built on this machine.

The build context is the controller's Git work tree. Its ``.git/`` directory (which holds
the remote URL, credentials included, in ``.git/config``) is never sent to the engine: the
context tar is made here, with the context's ``.dockerignore`` patterns plus ``.git``.
"""

from __future__ import annotations

import math
import os
import re
import tarfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

import docker
import docker.errors
import docker.utils.build
import requests
import urllib3.exceptions
from docker.api.build import process_dockerfile
from docker.types import CancellableStream
from loguru import logger

from teg_ota.domain.model.errors import InvalidVersion
from teg_ota.domain.model.versions import IMAGE_TAG, parse_version, version_from_image
from teg_ota.ports.container_runtime import (
    VERSION_LABEL,
    BuildFailed,
    ContainerRuntimeError,
    ControllerExit,
    ControllerState,
    Health,
    ImageInfo,
    RuntimeUnavailable,
    StartFailed,
    StopFailed,
)

_MAX_MESSAGE = 400
"""Longest engine message copied into an error (it ends up in ``sw_error``)."""

_STREAM_END_SLACK_S = 0.5
"""An event stream that ends this close to the deadline ended because of the deadline."""

_MAX_STREAM_RESUBSCRIBES = 3

_RFC3339_RE = re.compile(
    r"(?P<base>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(?P<frac>\d+))?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})"
)

_NOT_REACHABLE: tuple[type[BaseException], ...] = (
    requests.exceptions.RequestException,
    urllib3.exceptions.HTTPError,
    OSError,
)
"""Failures to talk to the engine at all. ``docker.errors.APIError`` also derives from
``requests.exceptions.RequestException``: it is always handled before these."""

_ALWAYS_EXCLUDED = (".git",)
"""Never part of a build context, whatever the context's ``.dockerignore`` says: the
repository's ``.git/config`` holds the remote URL with its credentials."""


@dataclass(frozen=True, slots=True)
class DockerRuntimeSettings:
    """How the controller container is run, and where the engine is.

    ``restart_policy`` defaults to ``"no"`` on purpose: teg-ota's watchdog owns restarts, so
    that restart backoff, crash-loop detection and rollback to the previous version are ours
    and observable (``wait_for_exit`` sees every exit). A Docker restart policy would restart
    the container behind the watchdog's back and hide crash loops from it.

    ``privileged`` defaults to ``True`` because the controller needs the Raspberry Pi's
    hardware; machines whose capability bounding set forbids it (CI) set it to ``False``.
    """

    container_name: str = "teg_controller"
    image_prefix: str = "teg-controller-"
    network_mode: str = "host"
    privileged: bool = True
    restart_policy: str = "no"
    environment: Mapping[str, str] = field(default_factory=dict)
    mounts: Sequence[str] = ()
    """Bind mounts in Docker's ``"src:dst[:ro]"`` form."""
    build_timeout_s: float = 1800
    """Upper bound for a whole image build; the build is cancelled when it is exceeded."""
    base_url: str | None = None
    """Engine address (``unix:///var/run/docker.sock``); ``None`` = ``docker.from_env()``."""
    prune_label: str | None = None
    """Only prune stopped containers carrying this label (``key`` or ``key=value``);
    ``None`` prunes every stopped container, as the seed's gateway did."""


_clients: dict[str | None, docker.DockerClient] = {}
_clients_lock = threading.Lock()


def _client_for(base_url: str | None) -> docker.DockerClient:
    """The process-wide ``docker.DockerClient`` for ``base_url``, created on first use."""
    with _clients_lock:
        client = _clients.get(base_url)
        if client is not None:
            return client
        where = base_url or "the default engine (DOCKER_HOST or /var/run/docker.sock)"
        try:
            if base_url is None:
                client = docker.from_env()
            else:
                client = docker.DockerClient(base_url=base_url)
        except docker.errors.DockerException as exc:
            raise RuntimeUnavailable(
                f"container engine unavailable at {where}: {_short(exc)}"
            ) from exc
        except _NOT_REACHABLE as exc:
            raise RuntimeUnavailable(
                f"container engine unavailable at {where}: {_short(exc)}"
            ) from exc
        _clients[base_url] = client
        return client


def _forget_client(base_url: str | None, client: docker.DockerClient) -> None:
    """Drop ``client`` from the cache (if still cached) after its connection failed."""
    with _clients_lock:
        if base_url not in _clients or _clients[base_url] is not client:
            return
        del _clients[base_url]
    try:
        client.close()
    except Exception as exc:  # noqa: BLE001 - closing a broken client must never mask the cause
        logger.debug("closing a broken docker client failed: {}", exc)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def _explanation(exc: BaseException) -> str:
    """The engine's own words for an ``APIError`` (its ``message``), else the HTTP error."""
    explanation = getattr(exc, "explanation", None)
    if isinstance(explanation, bytes):
        explanation = explanation.decode("utf-8", "replace")
    if explanation:
        return _short(Exception(explanation))
    return _short(exc)


def _is_server_error(exc: BaseException) -> bool:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return isinstance(status, int) and status >= 500


def parse_docker_time_ms(value: object) -> int | None:
    """Docker's RFC 3339 timestamps (nanoseconds, ``Z``) to Unix milliseconds.

    Returns ``None`` for missing values and for Go's zero time (``0001-01-01T00:00:00Z``,
    what Docker reports for a container that never started).
    """
    if not isinstance(value, str):
        return None
    match = _RFC3339_RE.fullmatch(value.strip())
    if match is None:
        return None
    tz = match["tz"]
    base = datetime.fromisoformat(match["base"] + ("+00:00" if tz == "Z" else tz))
    if base.year <= 1:
        return None
    frac = match["frac"] or ""
    nanos = int((frac + "000000000")[:9])
    return int(base.timestamp()) * 1000 + nanos // 1_000_000


def _parse_created_s(value: object) -> float:
    if isinstance(value, int | float):
        return float(value)
    ms = parse_docker_time_ms(value)
    return ms / 1000 if ms is not None else 0.0


def _health_of(state: Mapping[str, Any]) -> Health:
    health = state.get("Health") or {}
    status = health.get("Status") if isinstance(health, Mapping) else None
    try:
        return Health(status) if status else Health.NONE
    except ValueError:
        return Health.NONE


class DockerRuntime:
    """The controller container on a Docker engine (implements ``ContainerRuntime``)."""

    def __init__(self, settings: DockerRuntimeSettings | None = None) -> None:
        self._settings = settings or DockerRuntimeSettings()
        self._root_fallback_logged = False
        self._bad_labels_logged: set[str] = set()

    @property
    def settings(self) -> DockerRuntimeSettings:
        return self._settings

    # -- client and error translation ------------------------------------------------------

    def _client(self) -> docker.DockerClient:
        return _client_for(self._settings.base_url)

    @contextmanager
    def _engine(
        self,
        action: str,
        failure: type[ContainerRuntimeError] = ContainerRuntimeError,
    ) -> Iterator[Any]:
        """Yield the client; translate what the SDK raises into the port's errors.

        Unreachable engine -> :class:`RuntimeUnavailable` (and the client is recreated next
        time). An ``APIError`` -> ``failure`` with the engine's explanation, except that a 5xx
        answer to a plain query (``failure`` is the base class) means the engine is not in a
        state to answer: :class:`RuntimeUnavailable`.
        """
        client = self._client()
        try:
            yield client
        except ContainerRuntimeError:
            raise
        except docker.errors.APIError as exc:
            if failure is ContainerRuntimeError and _is_server_error(exc):
                raise RuntimeUnavailable(
                    f"{action}: container engine error: {_explanation(exc)}"
                ) from exc
            raise failure(f"{action}: {_explanation(exc)}") from exc
        except _NOT_REACHABLE as exc:
            _forget_client(self._settings.base_url, client)
            raise RuntimeUnavailable(
                f"{action}: container engine unreachable: {_short(exc)}"
            ) from exc
        except docker.errors.DockerException as exc:
            raise failure(f"{action}: {_short(exc)}") from exc

    def _is_controller_tag(self, tag: object) -> bool:
        """``tag`` is ``<prefix><version>:latest`` for a valid version, nothing else."""
        prefix = self._settings.image_prefix
        suffix = ":" + IMAGE_TAG
        return (
            isinstance(tag, str)
            and tag.startswith(prefix)
            and tag.endswith(suffix)
            and "/" not in tag
            and "@" not in tag
            and version_from_image(prefix, tag) is not None
        )

    def _check_tag(self, tag: str, failure: type[ContainerRuntimeError]) -> None:
        """Tags come from the domain (validated there); refuse anything else anyway."""
        if not self._is_controller_tag(tag):
            prefix = self._settings.image_prefix
            suffix = ":" + IMAGE_TAG
            raise failure(
                f"refusing image name {_short(Exception(repr(tag)))}: "
                f"expected {prefix}<version>{suffix}"
            )

    # -- queries -----------------------------------------------------------------------------

    def _inspect_container(self, client: docker.DockerClient) -> dict[str, Any] | None:
        try:
            attrs: dict[str, Any] = client.api.inspect_container(self._settings.container_name)
        except docker.errors.NotFound:
            return None
        return attrs

    def controller_state(self) -> ControllerState:
        with self._engine("inspecting the controller container") as client:
            attrs = self._inspect_container(client)
            if attrs is None:
                return ControllerState(exists=False)
            return self._state_from(client, attrs)

    def _state_from(self, client: docker.DockerClient, attrs: Mapping[str, Any]) -> ControllerState:
        state: Mapping[str, Any] = attrs.get("State") or {}
        config: Mapping[str, Any] = attrs.get("Config") or {}
        image_name = config.get("Image")
        image_name = image_name if isinstance(image_name, str) else None
        version: str | None = None
        image_id = attrs.get("Image")
        if isinstance(image_id, str) and image_id:
            try:
                image_attrs = client.api.inspect_image(image_id)
            except docker.errors.NotFound:
                image_attrs = {}
            version = self._label_version(
                ((image_attrs.get("Config") or {}).get("Labels") or {}).get(VERSION_LABEL),
                f"image {image_id}",
            )
        if not version:
            version = self._label_version(
                (config.get("Labels") or {}).get(VERSION_LABEL), "the controller container"
            )
        if not version and image_name is not None:
            version = version_from_image(self._settings.image_prefix, image_name)
        running = bool(state.get("Running"))
        exit_code = state.get("ExitCode")
        return ControllerState(
            exists=True,
            running=running,
            version=version or None,
            image=image_name,
            started_at_ms=parse_docker_time_ms(state.get("StartedAt")),
            health=_health_of(state),
            exit_code=None if running or not isinstance(exit_code, int) else exit_code,
        )

    def _label_version(self, value: object, where: str) -> str | None:
        """The version a ``VERSION_LABEL`` value names, or ``None`` when it names none.

        Labels are whatever the image's Dockerfile (or whoever created the container) wrote:
        untrusted input, only used once :func:`parse_version` accepts it. An invalid one is
        logged once (the watchdog inspects the controller often).
        """
        if value is None or value == "":
            return None
        try:
            return parse_version(value).value
        except InvalidVersion as exc:
            key = f"{where}\0{value!r}"
            if key not in self._bad_labels_logged and len(self._bad_labels_logged) < 64:
                self._bad_labels_logged.add(key)
                logger.warning("ignoring the version label of {}: {}", where, exc)
            return None

    def image_exists(self, tag: str) -> bool:
        return self.image_labels(tag) is not None

    def image_labels(self, tag: str) -> Mapping[str, str] | None:
        self._check_tag(tag, ContainerRuntimeError)
        with self._engine(f"inspecting image {tag}") as client:
            try:
                attrs = client.api.inspect_image(tag)
            except docker.errors.NotFound:
                return None
            labels = (attrs.get("Config") or {}).get("Labels") or {}
            return {str(k): str(v) for k, v in labels.items()}

    # -- build -------------------------------------------------------------------------------

    def build_image(
        self,
        context_dir: str,
        tag: str,
        labels: Mapping[str, str],
        on_progress: Callable[[str], None] | None = None,
    ) -> None:
        """Build ``tag`` from ``context_dir`` (never pulling), streaming the build log.

        The context sent to the engine is a tar made here, as ``docker build`` would make
        it (the context's ``.dockerignore`` honoured), except that ``.git`` is never in it.
        The whole build is bounded by ``build_timeout_s``: at the deadline a timer thread
        closes the build's connection, which makes the engine cancel the build. A progress
        callback that raises is logged and not called again; the build goes on.
        """
        self._check_tag(tag, BuildFailed)
        if not os.path.isdir(context_dir):
            raise BuildFailed(f"build context {context_dir!r} is not a directory")
        timeout_s = self._settings.build_timeout_s
        action = f"building {tag}"
        timed_out = threading.Event()
        progress = _GuardedProgress(on_progress) if on_progress is not None else None
        logger.info("building image {} from {}", tag, context_dir)
        deadline = time.monotonic() + timeout_s
        # Made before talking to the engine: a context file that cannot be read is a
        # BuildFailed, not an unreachable engine.
        context, dockerfile = _build_context(context_dir, action)
        try:
            self._build_from(
                context, dockerfile, tag, labels, action, deadline, timed_out, progress
            )
        finally:
            context.close()
        logger.info("built image {}", tag)

    def _build_from(
        self,
        context: IO[bytes],
        dockerfile: str | None,
        tag: str,
        labels: Mapping[str, str],
        action: str,
        deadline: float,
        timed_out: threading.Event,
        progress: Callable[[str], None] | None,
    ) -> None:
        timeout_s = self._settings.build_timeout_s
        with self._engine(action, BuildFailed) as client:
            try:
                chunks = client.api.build(
                    fileobj=context,
                    custom_context=True,
                    dockerfile=dockerfile,
                    tag=tag,
                    labels=dict(labels),
                    decode=True,
                    rm=True,
                    forcerm=True,
                    pull=False,
                    timeout=timeout_s,
                )
            except requests.exceptions.Timeout as exc:
                raise BuildFailed(f"{action}: timed out after {timeout_s:g} s") from exc
            stream = _cancellable(chunks)
            timer = threading.Timer(
                max(0.0, deadline - time.monotonic()),
                _close_quietly,
                args=(stream, timed_out),
            )
            timer.daemon = True
            timer.start()
            built = False
            try:
                for chunk in stream:
                    built = self._handle_build_chunk(chunk, action, progress) or built
            except (*_NOT_REACHABLE, docker.errors.DockerException) as exc:
                if timed_out.is_set():
                    raise BuildFailed(f"{action}: timed out after {timeout_s:g} s") from exc
                raise
            finally:
                timer.cancel()
                _close_quietly(stream, None)
            if timed_out.is_set():
                raise BuildFailed(f"{action}: timed out after {timeout_s:g} s")
            if not built:
                try:
                    present = client.api.inspect_image(tag) is not None
                except docker.errors.NotFound:
                    present = False
                if not present:
                    raise BuildFailed(f"{action}: the engine ended the build without an image")

    @staticmethod
    def _handle_build_chunk(
        chunk: object, action: str, on_progress: Callable[[str], None] | None
    ) -> bool:
        """Log/forward one decoded build chunk; raise on an error; True when it names the
        built image."""
        if not isinstance(chunk, Mapping):
            return False
        if "error" in chunk or "errorDetail" in chunk:
            detail = chunk.get("errorDetail") or {}
            message = chunk.get("error") or (
                detail.get("message") if isinstance(detail, Mapping) else None
            )
            raise BuildFailed(f"{action}: {_short(Exception(message or 'unknown error'))}")
        text = chunk.get("stream")
        if isinstance(text, str):
            for raw_line in text.splitlines():
                line = raw_line.rstrip()
                if not line:
                    continue
                logger.debug("build: {}", line)
                if on_progress is not None:
                    on_progress(line)
        status = chunk.get("status")
        if isinstance(status, str) and status:
            logger.debug("build: {}", status)
        aux = chunk.get("aux")
        return isinstance(aux, Mapping) and bool(aux.get("ID"))

    # -- run / stop --------------------------------------------------------------------------

    def run_controller(self, tag: str, labels: Mapping[str, str]) -> None:
        """Create and start the controller from the local image ``tag``.

        ``containers.run`` would pull when the image is missing: the image is checked first,
        and the container is created with ``containers.create`` (which never pulls) and then
        started, so a missing image is a :class:`StartFailed`, never a download.
        """
        self._check_tag(tag, StartFailed)
        settings = self._settings
        name = settings.container_name
        action = f"starting {name} from {tag}"
        with self._engine(action, StartFailed) as client:
            try:
                client.api.inspect_image(tag)
            except docker.errors.NotFound as exc:
                raise StartFailed(
                    f"{action}: image {tag} does not exist locally (it is never pulled)"
                ) from exc
            existing = self._inspect_container(client)
            if existing is not None:
                if (existing.get("State") or {}).get("Running"):
                    raise StartFailed(f"{action}: container {name} is already running")
                logger.info("removing stopped container {} before starting {}", name, tag)
                with suppress(docker.errors.NotFound):
                    client.api.remove_container(name)
            container = client.containers.create(
                image=tag,
                name=name,
                detach=True,
                network_mode=settings.network_mode,
                privileged=settings.privileged,
                restart_policy={"Name": settings.restart_policy},
                environment=dict(settings.environment),
                volumes=list(settings.mounts),
                labels=dict(labels),
            )
            try:
                container.start()
            except docker.errors.APIError:
                # An unstartable container would only be in the way of the next attempt.
                try:
                    container.remove(force=True)
                except docker.errors.APIError as cleanup_exc:
                    logger.warning("could not remove unstartable {}: {}", name, cleanup_exc)
                raise
        logger.info("started {} from {}", name, tag)

    def stop_controller(self, grace_s: float) -> None:
        name = self._settings.container_name
        grace = max(0, math.ceil(grace_s))
        with self._engine(f"stopping {name}", StopFailed) as client:
            attrs = self._inspect_container(client)
            if attrs is None or not (attrs.get("State") or {}).get("Running"):
                return
            logger.info("stopping {} (grace {} s)", name, grace)
            try:
                client.api.stop(name, timeout=grace)
            except docker.errors.NotFound:
                return

    # -- waiting -----------------------------------------------------------------------------

    def wait_for_exit(self, timeout_s: float) -> ControllerExit | None:
        """Block on the engine's event stream until the controller dies or turns unhealthy.

        The stream is subscribed from a timestamp taken before the current state is inspected,
        so an exit between the inspection and the subscription is replayed, not missed. A
        timer closes the stream at the deadline (the engine's ``until`` does too). A missing
        container counts as stopped: ``ControllerExit(exit_code=None)``.
        """
        deadline = time.monotonic() + max(0.0, timeout_s)
        name = self._settings.container_name
        action = f"waiting for {name}"
        resubscribes = 0
        while True:
            remaining = deadline - time.monotonic()
            with self._engine(action) as client:
                now = time.time()
                since = f"{now:.9f}"
                until = f"{now + max(remaining, 0.0) + 1:.9f}"
                attrs = self._inspect_container(client)
                immediate = self._exit_from_attrs(attrs)
                if immediate is not None or remaining <= 0 or attrs is None:
                    return immediate
                container_id = attrs.get("Id") or name
                stream = client.events(
                    decode=True,
                    since=since,
                    until=until,
                    filters={
                        "type": "container",
                        "container": container_id,
                        "event": ["die", "health_status"],
                    },
                )
                closed = threading.Event()
                timer = threading.Timer(remaining, _close_quietly, args=(stream, closed))
                timer.daemon = True
                timer.start()
                try:
                    for event in stream:
                        found = self._exit_from_event(event)
                        if found is not None:
                            return found
                finally:
                    timer.cancel()
                    _close_quietly(stream, None)
            # The stream ended: the deadline, or the engine closed it (shutting down?).
            left = deadline - time.monotonic()
            if closed.is_set() or left <= _STREAM_END_SLACK_S:
                state = self.controller_state()
                return self._exit_from_state(state)
            resubscribes += 1
            if resubscribes > _MAX_STREAM_RESUBSCRIBES:
                raise RuntimeUnavailable(f"{action}: the engine keeps closing its event stream")
            logger.debug("event stream for {} ended early; subscribing again", name)

    @staticmethod
    def _exit_from_attrs(attrs: Mapping[str, Any] | None) -> ControllerExit | None:
        if attrs is None:
            return ControllerExit(exit_code=None)
        state: Mapping[str, Any] = attrs.get("State") or {}
        if not state.get("Running"):
            code = state.get("ExitCode")
            return ControllerExit(exit_code=code if isinstance(code, int) else None)
        if _health_of(state) is Health.UNHEALTHY:
            return ControllerExit(exit_code=None, unhealthy=True)
        return None

    @staticmethod
    def _exit_from_state(state: ControllerState) -> ControllerExit | None:
        if not state.exists:
            return ControllerExit(exit_code=None)
        if not state.running:
            return ControllerExit(exit_code=state.exit_code)
        if state.health is Health.UNHEALTHY:
            return ControllerExit(exit_code=None, unhealthy=True)
        return None

    @staticmethod
    def _exit_from_event(event: object) -> ControllerExit | None:
        if not isinstance(event, Mapping):
            return None
        action = event.get("Action")
        if not isinstance(action, str):
            return None
        if action == "die":
            actor = event.get("Actor") or {}
            attributes = actor.get("Attributes") or {} if isinstance(actor, Mapping) else {}
            raw = attributes.get("exitCode") if isinstance(attributes, Mapping) else None
            try:
                code: int | None = int(raw) if raw is not None else None
            except (TypeError, ValueError):
                code = None
            return ControllerExit(exit_code=code)
        if action.startswith("health_status") and action.split(":", 1)[-1].strip() == (
            Health.UNHEALTHY.value
        ):
            return ControllerExit(exit_code=None, unhealthy=True)
        return None

    # -- housekeeping ------------------------------------------------------------------------

    def prune_stopped_containers(self) -> int:
        label = self._settings.prune_label
        filters = {"label": label} if label else None
        with self._engine("pruning stopped containers") as client:
            result = client.api.prune_containers(filters=filters) or {}
        removed = result.get("ContainersDeleted") or []
        if removed:
            logger.info(
                "pruned {} stopped container(s), {} bytes reclaimed",
                len(removed),
                result.get("SpaceReclaimed", 0),
            )
        return len(removed)

    def list_controller_images(self) -> Sequence[ImageInfo]:
        prefix = self._settings.image_prefix
        with self._engine("listing controller images") as client:
            images = client.api.images() or []
        found: list[ImageInfo] = []
        for image in images:
            labels = image.get("Labels") or {}
            for repo_tag in image.get("RepoTags") or ():
                if not isinstance(repo_tag, str) or not repo_tag.startswith(prefix):
                    continue
                if not self._is_controller_tag(repo_tag):
                    # Same prefix, but not a name teg-ota gives (another tag than :latest,
                    # a name no version maps to): not ours to list, keep or remove.
                    logger.debug("ignoring image {}: not a controller image name", repo_tag)
                    continue
                found.append(
                    ImageInfo(
                        tag=repo_tag,
                        created_at=_parse_created_s(image.get("Created")),
                        labels={str(k): str(v) for k, v in labels.items()},
                        size_bytes=int(image.get("Size") or 0),
                    )
                )
        found.sort(key=lambda info: (info.created_at, info.tag))
        return found

    def remove_image(self, tag: str) -> None:
        """Untag/remove ``tag``; a missing image is fine. Never forced: the engine refuses
        (and this raises :class:`ContainerRuntimeError`) while a container uses the image."""
        self._check_tag(tag, ContainerRuntimeError)
        with self._engine(f"removing image {tag}") as client:
            try:
                client.api.remove_image(tag, force=False, noprune=False)
            except docker.errors.ImageNotFound:
                return
            except docker.errors.NotFound:
                return
        logger.info("removed image {}", tag)

    def free_disk_bytes(self) -> int:
        with self._engine("reading the engine's data root") as client:
            info = client.info() or {}
        root = info.get("DockerRootDir")
        path = root if isinstance(root, str) and os.path.isdir(root) else "/"
        if path != root and not self._root_fallback_logged:
            self._root_fallback_logged = True
            logger.info(
                "engine data root {!r} is not visible from this process; "
                "reporting free space of / instead",
                root,
            )
        return _free_bytes_at(path)


def _free_bytes_at(path: str) -> int:
    """Free bytes for unprivileged users in the file system holding ``path``.

    An ``OSError`` (the directory vanished since it was checked, an I/O error) becomes a
    :class:`ContainerRuntimeError`: the port's callers handle that, not an ``OSError``.
    """
    try:
        stats = os.statvfs(path)
    except OSError as exc:
        raise ContainerRuntimeError(f"reading the free space of {path!r}: {_short(exc)}") from exc
    return stats.f_bavail * stats.f_frsize


def _dockerignore_patterns(context_dir: str) -> list[str]:
    """The context's ``.dockerignore`` patterns, read the way docker-py's ``build`` does."""
    path = os.path.join(context_dir, ".dockerignore")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        lines = [line.strip() for line in f.read().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def _build_context(context_dir: str, action: str) -> tuple[IO[bytes], str | None]:
    """A tar of ``context_dir`` (``.dockerignore`` honoured, ``.git`` never included) and
    the Dockerfile name to pass along with it (``None``: the engine's default)."""
    try:
        patterns = _dockerignore_patterns(context_dir)
        dockerfile = process_dockerfile(None, context_dir)
        context: IO[bytes] = docker.utils.build.tar(
            context_dir,
            exclude=[*patterns, *_ALWAYS_EXCLUDED],
            dockerfile=dockerfile,
        )
    except (OSError, ValueError, tarfile.TarError) as exc:
        raise BuildFailed(f"{action}: cannot read the build context: {_short(exc)}") from exc
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


def _cancellable(chunks: Iterator[Any]) -> Iterator[Any]:
    """Wrap the SDK's build generator so another thread can close its connection.

    ``APIClient.build`` sends the request and returns a generator over the response; the
    response is the generator's first argument. When it cannot be found (an SDK change),
    the generator is returned as is and only the per-read timeout bounds the build.
    """
    frame = getattr(chunks, "gi_frame", None)
    response = frame.f_locals.get("response") if frame is not None else None
    if response is None or not hasattr(response, "raw"):
        logger.debug("cannot reach the build's connection; relying on the read timeout")
        return chunks
    if not getattr(getattr(response.raw, "_fp", None), "chunked", False):
        # An immediate error answer: the generator raises its APIError, which
        # CancellableStream (it swallows OSError, and APIError is one) would hide.
        return chunks
    wrapped: Iterator[Any] = CancellableStream(chunks, response)
    return wrapped


def _close_quietly(stream: object, closed: threading.Event | None) -> None:
    if closed is not None:
        closed.set()
    close = getattr(stream, "close", None)
    if close is None:
        return
    try:
        close()
    except (OSError, AttributeError, ValueError, docker.errors.DockerException) as exc:
        logger.debug("closing a docker stream: {}", exc)
