"""``DockerRuntime``: the ``ContainerRuntime`` port on the Docker Engine API (Docker SDK 7).

This module decides what to ask the engine and in which order; what the answers mean is in
:mod:`.inspection`, how the connection is kept and its errors translated in :mod:`.client`,
what may be sent in :mod:`.validation`, how an image is made in :mod:`.build` and how an
exit is awaited in :mod:`.waiting`. Nothing is ever pulled: the engine may only run images
made on this machine.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.errors
import docker.types
from loguru import logger

from teg_ota.adapters.docker import build, failed_container, inspection, waiting
from teg_ota.adapters.docker.build_context import BuildLayout
from teg_ota.adapters.docker.client import Engine, explanation, short
from teg_ota.adapters.docker.host_dirs import ensure_directories
from teg_ota.adapters.docker.image_links import ToolMountFilter
from teg_ota.adapters.docker.validation import check_tag
from teg_ota.domain.model.controller import (
    COMMIT_LABEL,
    VERSION_LABEL,
    ControllerExit,
    ControllerState,
    ImageInfo,
)
from teg_ota.domain.model.errors import (
    BuildFailed,
    ContainerRuntimeError,
    InvalidVersion,
    PrivilegeRefused,
    StartFailed,
    StopFailed,
)

_IMAGE_ID = re.compile(r"sha256:[0-9a-f]{64}")


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
    """Upper bound for a whole image build (or load); it is cancelled when exceeded."""
    base_url: str | None = None
    """Engine address (``unix:///var/run/docker.sock``); ``None`` = ``docker.from_env()``."""
    prune_label: str | None = None
    """Only prune stopped containers carrying this label (``key`` or ``key=value``);
    ``None`` prunes every stopped container, as the seed's gateway did."""
    build_context: str | None = None
    """Relative to the staged work tree; ``None``: ``docker`` when it has
    ``docker/<dockerfile>``, else the work tree itself (the original gateway's layout first;
    :mod:`.build_context`)."""
    dockerfile: str = "Dockerfile"
    """Relative to the build context."""
    build_args: Mapping[str, str] = field(default_factory=dict, repr=False)
    """``--build-arg``s of every build; never logged (they may hold secrets)."""
    log_driver: str = "json-file"
    log_options: Mapping[str, str] = field(
        default_factory=lambda: {"max-size": "10m", "max-file": "5"}
    )
    """Applied to every container created (an SD card must never fill with logs)."""
    crash_log_lines: int = 50
    """Last lines of a failed container copied into teg-ota's log before it makes way for
    the next one, which is kept as ``<name>-failed`` until the next success (0: neither;
    :mod:`.failed_container`)."""
    stop_timeout_s: float | None = None
    """The container's own ``StopTimeout``: the grace a plain ``docker stop`` or the engine's
    shutdown gives it (``None``: the engine's 10 s). teg-ota's own stops pass theirs."""
    tool_mounts: Sequence[str] = ()
    """Read-only mounts of host programs (the Pi tools), left out for an image whose path is
    a link to another program (:mod:`.image_links`)."""
    create_dirs: Sequence[str] = ()
    """Host directories created (mode 0755) when missing before a container is created
    (the sources of the default mounts: :mod:`.host_dirs`)."""


class DockerRuntime:
    """The controller container on a Docker engine (implements ``ContainerRuntime``)."""

    def __init__(self, settings: DockerRuntimeSettings | None = None) -> None:
        self._settings = settings or DockerRuntimeSettings()
        self._docker = Engine(self._settings.base_url)
        self._root_fallback_logged = False
        self._layout = BuildLayout(self._settings.build_context, self._settings.dockerfile)
        self._bad_labels_logged: set[str] = set()
        self._stopped: failed_container.Stopped | None = None
        self._tool_mounts = ToolMountFilter({VERSION_LABEL: "teg-ota-image-probe"})

    @property
    def settings(self) -> DockerRuntimeSettings:
        return self._settings

    def _client(self) -> docker.DockerClient:
        return self._docker.client()

    def _engine(
        self, action: str, failure: type[ContainerRuntimeError] = ContainerRuntimeError
    ) -> AbstractContextManager[Any]:
        return self._docker.session(action, failure)

    def _check_tag(self, tag: str, failure: type[ContainerRuntimeError]) -> None:
        """Tags come from the domain (validated there); refuse anything else anyway."""
        check_tag(self._settings.image_prefix, tag, failure)

    # -- queries -----------------------------------------------------------------------------

    def _inspect_container(self, client: docker.DockerClient) -> dict[str, Any] | None:
        return waiting.inspect_container(client, self._settings.container_name)

    def controller_state(self) -> ControllerState:
        with self._engine("inspecting the controller container") as client:
            attrs = self._inspect_container(client)
            if attrs is None:
                return ControllerState(exists=False)
            image_attrs: Mapping[str, Any] | None = None
            image_id = attrs.get("Image")
            if isinstance(image_id, str) and image_id:
                try:
                    image_attrs = client.api.inspect_image(image_id)
                except docker.errors.NotFound:
                    image_attrs = {}
            return inspection.controller_state_from(
                attrs, image_attrs, self._settings.image_prefix, self._bad_label
            )

    def _bad_label(self, where: str, value: object, exc: InvalidVersion) -> None:
        """Log an invalid version label once: the watchdog inspects the controller often."""
        key = f"{where}\0{value!r}"
        if key not in self._bad_labels_logged and len(self._bad_labels_logged) < 64:
            self._bad_labels_logged.add(key)
            logger.warning("ignoring the version label of {}: {}", where, exc)

    def image_exists(self, tag: str) -> bool:
        return self.image_labels(tag) is not None

    def image_labels(self, tag: str) -> Mapping[str, str] | None:
        self._check_tag(tag, ContainerRuntimeError)
        with self._engine(f"inspecting image {tag}") as client:
            try:
                attrs = client.api.inspect_image(tag)
            except docker.errors.NotFound:
                return None
            return inspection.string_labels(inspection.labels_of(attrs))

    # -- making images -----------------------------------------------------------------------

    def build_image(
        self,
        context_dir: str,
        tag: str,
        labels: Mapping[str, str],
        on_progress: Callable[[str], None] | None = None,
    ) -> None:
        """Build ``tag`` from the staged work tree ``context_dir``, never pulling and never
        sending ``.git``; the context and Dockerfile in it are the settings' (or the default
        layout's: :mod:`.build_context`), checked before the engine is contacted."""
        self._check_tag(tag, BuildFailed)
        chosen = self._layout.choose(context_dir, labels.get(COMMIT_LABEL))
        build.build_image(
            self._docker,
            chosen.context_dir,
            tag,
            labels,
            self._settings.build_timeout_s,
            on_progress,
            dockerfile=chosen.dockerfile,
            build_args=self._settings.build_args,
        )
        self._check_tool_paths(tag)

    def load_image(self, archive_path: str, tag: str, labels: Mapping[str, str]) -> None:
        """Load a ``docker save`` archive's one image as ``tag``, carrying ``labels``."""
        self._check_tag(tag, BuildFailed)
        build.load_image(self._docker, archive_path, tag, labels, self._settings.build_timeout_s)
        self._check_tool_paths(tag)

    def _check_tool_paths(self, tag: str) -> None:
        """Which host tools the new image can take as mounts, found now, while the old
        controller still runs, not after its stop (the answer is cached per image)."""
        tools = self._settings.tool_mounts
        if not tools:
            return
        try:
            with self._engine(f"checking the tool paths of {tag}") as client:
                self._tool_mounts.allowed(client, tag, tools)
        except ContainerRuntimeError as exc:
            logger.debug("tool paths of {} left for its start: {}", tag, exc)

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
                if inspection.is_running(existing):
                    raise StartFailed(f"{action}: container {name} is already running")
                failed_container.make_way(
                    client, existing, name, settings.crash_log_lines, self._stopped, tag
                )
            ensure_directories(settings.create_dirs)
            # The low-level call: ``containers.create`` cannot set ``StopTimeout``.
            host_config = client.api.create_host_config(
                network_mode=settings.network_mode,
                privileged=settings.privileged,
                restart_policy={"Name": settings.restart_policy},
                binds=[
                    *settings.mounts,
                    *self._tool_mounts.allowed(client, tag, settings.tool_mounts),
                ],
                log_config=docker.types.LogConfig(
                    type=settings.log_driver, config=dict(settings.log_options)
                ),
            )
            stop_timeout = settings.stop_timeout_s
            created = client.api.create_container(
                image=tag,
                name=name,
                detach=True,
                environment=dict(settings.environment),
                labels=dict(labels),
                host_config=host_config,
                stop_timeout=None if stop_timeout is None else max(0, math.ceil(stop_timeout)),
            )
            container_id = created["Id"]
            try:
                client.api.start(container_id)
            except docker.errors.APIError as exc:
                # An unstartable container would only be in the way of the next attempt.
                try:
                    client.api.remove_container(container_id, force=True)
                except docker.errors.APIError as cleanup_exc:
                    logger.warning("could not remove unstartable {}: {}", name, cleanup_exc)
                if settings.privileged and inspection.refuses_privilege(explanation(exc)):
                    raise PrivilegeRefused(
                        f"{action}: the container engine refuses privileged containers "
                        f"({explanation(exc)}); fix the engine, or set "
                        "TEG_CONTROLLER_PRIVILEGED=0 on the gateway"
                    ) from exc
                raise
        logger.info("started {} from {}", name, tag)

    def stop_controller(self, grace_s: float) -> None:
        name = self._settings.container_name
        grace = max(0, math.ceil(grace_s))
        with self._engine(f"stopping {name}", StopFailed) as client:
            attrs = self._inspect_container(client)
            if attrs is None or not inspection.is_running(attrs):
                return
            self._stopped = failed_container.stopping(attrs)
            logger.info("stopping {} (grace {} s)", name, grace)
            try:
                client.api.stop(name, timeout=grace)
            except docker.errors.NotFound:
                return

    def last_output(self, lines: int) -> tuple[str, ...]:
        """The controller container's last ``lines`` lines of output (stdout and stderr),
        at most ``crash_log_lines``, without control characters; empty when there is none
        or it cannot be read back."""
        lines = min(lines, self._settings.crash_log_lines)
        if lines <= 0:
            return ()
        name = self._settings.container_name
        with self._engine(f"reading the output of {name}") as client:
            return failed_container.last_lines(client, name, lines)

    # -- waiting -----------------------------------------------------------------------------

    def wait_for_exit(self, timeout_s: float) -> ControllerExit | None:
        """Block until the controller exits or turns unhealthy (event-driven, not polled)."""
        return waiting.wait_for_exit(
            self._docker, self._settings.container_name, timeout_s, self.controller_state
        )

    # -- housekeeping ------------------------------------------------------------------------

    def prune_stopped_containers(self) -> int:
        label = self._settings.prune_label
        filters = {"label": label} if label else None
        with self._engine("pruning stopped containers") as client:
            result = client.api.prune_containers(filters=filters) or {}
            # Whatever its labels (one the original gateway started has none): a success.
            kept = failed_container.remove_kept(client, self._settings.container_name)
        removed = result.get("ContainersDeleted") or []
        if removed:
            logger.info(
                "pruned {} stopped container(s), {} bytes reclaimed",
                len(removed),
                result.get("SpaceReclaimed", 0),
            )
        return len(removed) + kept

    def list_controller_images(self) -> Sequence[ImageInfo]:
        with self._engine("listing controller images") as client:
            images = client.api.images() or []
        found, skipped = inspection.controller_images_from(images, self._settings.image_prefix)
        for repo_tag in skipped:
            logger.debug("ignoring image {}: not a controller image name", repo_tag)
        return found

    def remove_image(self, tag: str) -> None:
        """Untag/remove ``tag``; a missing image is fine. Never forced: the engine refuses
        (and this raises :class:`ContainerRuntimeError`) while a container uses the image."""
        self._check_tag(tag, ContainerRuntimeError)
        with self._engine(f"removing image {tag}") as client:
            try:
                client.api.remove_image(tag, force=False, noprune=False)
            except docker.errors.NotFound:  # ImageNotFound is one
                return
        logger.info("removed image {}", tag)

    def tag_image(self, image: str, new_tag: str) -> None:
        if not _IMAGE_ID.fullmatch(image):
            self._check_tag(image, ContainerRuntimeError)
        self._check_tag(new_tag, ContainerRuntimeError)
        repository, _, name = new_tag.rpartition(":")
        with self._engine(f"tagging image {image} as {new_tag}") as client:
            client.api.tag(image, repository, name, force=True)

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
        return free_bytes_at(path)


def free_bytes_at(path: str) -> int:
    """Free bytes for unprivileged users in the file system holding ``path``.

    An ``OSError`` (the directory vanished since it was checked, an I/O error) becomes a
    :class:`ContainerRuntimeError`: the port's callers handle that, not an ``OSError``.
    """
    try:
        stats = os.statvfs(path)
    except OSError as exc:
        raise ContainerRuntimeError(f"reading the free space of {path!r}: {short(exc)}") from exc
    return stats.f_bavail * stats.f_frsize
