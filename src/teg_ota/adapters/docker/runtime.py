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
from contextlib import AbstractContextManager, suppress
from typing import Any

import docker
import docker.errors
import docker.types
from loguru import logger

from teg_ota.adapters.docker import build, failed_container, inspection, next_container, waiting
from teg_ota.adapters.docker.build_context import BuildLayout
from teg_ota.adapters.docker.client import Engine, short
from teg_ota.adapters.docker.image_links import ToolMountFilter
from teg_ota.adapters.docker.next_container import NextContainer
from teg_ota.adapters.docker.runtime_settings import DockerRuntimeSettings
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
    StartFailed,
    StopFailed,
)

_IMAGE_ID = re.compile(r"sha256:[0-9a-f]{64}")


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
        self._next = NextContainer(self._settings, self._tool_mounts)
        self._started: tuple[str, dict[str, str]] | None = None
        """The tag and labels of the controller this runtime last started."""

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
        """Create (or take the one prepared) and start the controller from the local image
        ``tag`` while no controller runs; a stopped one makes way after the start
        (:mod:`.next_container`). Nothing is ever pulled: a missing image is a
        :class:`StartFailed`, never a download."""
        self._check_tag(tag, StartFailed)
        name = self._settings.container_name
        with self._engine(f"starting {name} from {tag}", StartFailed) as client:
            if inspection.is_running(self._inspect_container(client)):
                raise StartFailed(
                    f"starting {name} from {tag}: container {name} is already running"
                )
            prepared = self._next.prepare(client, tag, labels)
            self._next.start(client, prepared, self._stopped)
        self._started = (tag, dict(labels))
        logger.info("started {} from {}", name, tag)

    def replace_controller(self, tag: str, labels: Mapping[str, str], grace_s: float) -> None:
        """Stop the controller and start ``tag`` in its place, with nothing but the stop
        and the start between the old one's exit and the new one's start: the new one is
        created first, while the old one runs, and named after its start."""
        self._check_tag(tag, StartFailed)
        name = self._settings.container_name
        with self._engine(f"preparing {name} from {tag}", StartFailed) as client:
            prepared = self._next.prepare(client, tag, labels)
            if self._settings.restart_policy != "no":
                # Stopped, the old one must stay stopped if the engine restarts before it
                # made way (a power cut right after the new one started): two never run.
                with suppress(docker.errors.APIError):
                    client.api.update_container(name, restart_policy={"Name": "no"})
        try:
            self.stop_controller(grace_s)
        except ContainerRuntimeError:
            # The old one may still run: the prepared one must not linger beside it.
            with suppress(ContainerRuntimeError), self._engine("removing " + self._next.name) as c:
                self._next.discard(c)
            raise
        with self._engine(f"starting {name} from {tag}", StartFailed) as client:
            self._next.start(client, prepared, self._stopped)
        self._started = (tag, dict(labels))
        logger.info("started {} from {} in place of the previous one", name, tag)

    def prepare_restart(self) -> None:
        """The stopped controller's restart waits (the watchdog's backoff): create its
        replacement now, from the image and labels this runtime last started it with, so the
        restart only starts it. Nothing when those are unknown (another process started it)
        or the controller runs."""
        started = self._started
        if started is None:
            return
        tag, labels = started
        name = self._settings.container_name
        with self._engine(f"preparing the restart of {name}", StartFailed) as client:
            attrs = self._inspect_container(client)
            if attrs is None or inspection.is_running(attrs):
                return
            if next_container.image_of(attrs) == tag:
                self._next.prepare(client, tag, labels)

    def discard_prepared(self) -> bool:
        """Remove a next controller container an interrupted swap left behind."""
        with self._engine("removing a left-over next controller container") as client:
            return self._next.discard(client)

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
        return waiting.wait_for_exit(self._docker, self._settings.container_name, timeout_s)

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
