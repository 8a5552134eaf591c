"""The next controller container: created before the swap, named only after its start.

A swap's downtime is the old controller's ``die`` to the new one's ``start``, and the
engine needs nothing in between but the stop and the start. So everything else happens
outside that window: *before* the stop, while the old controller still runs (or while a
crashed one's restart waits out its backoff), the image is checked and the new container
created, under the temporary name ``<name>-next``, which proves it can be created; *after*
the new one started, the old one makes way (it is removed, or, when it failed, its last
output is logged and it is kept as ``<name>-failed``: :mod:`.failed_container`) and the
new one takes the controller's name, the name the seed gateway and ``docker`` commands use.

A kill or a power cut between the two leaves a ``<name>-next`` behind, created or even
running: every creation removes one first, and recovery discards it
(:meth:`NextContainer.discard`) before it looks at the controller, so what recovery starts
is always the one container under the controller's name.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors
import docker.types
from loguru import logger

from teg_ota.adapters.docker import failed_container, inspection, waiting
from teg_ota.adapters.docker.client import explanation
from teg_ota.adapters.docker.host_dirs import ensure_directories
from teg_ota.adapters.docker.image_links import ToolMountFilter
from teg_ota.adapters.docker.runtime_settings import DockerRuntimeSettings
from teg_ota.domain.model.errors import PrivilegeRefused, StartFailed

NEXT_SUFFIX = "-next"
_NAME_WAIT_S = 2.0
"""How long the new controller waits for its name while someone else removes the old one."""
_NAME_POLL_S = 0.05


def next_name(name: str) -> str:
    return name + NEXT_SUFFIX


@dataclass(frozen=True, slots=True)
class Prepared:
    """A created, not yet started, next controller container."""

    container_id: str
    tag: str
    labels: tuple[tuple[str, str], ...]


def _key(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


class NextContainer:
    """Creates, starts and names the next controller container (one at a time)."""

    def __init__(self, settings: DockerRuntimeSettings, tool_mounts: ToolMountFilter) -> None:
        self._settings = settings
        self._tool_mounts = tool_mounts
        self._prepared: Prepared | None = None

    @property
    def name(self) -> str:
        return next_name(self._settings.container_name)

    def prepare(self, client: docker.DockerClient, tag: str, labels: Mapping[str, str]) -> Prepared:
        """The next container of ``tag`` with ``labels``: the one created earlier when it is
        still there, else a new one (any other ``<name>-next`` is removed first). The image
        is checked first: it is never pulled, so a missing one is a :class:`StartFailed`."""
        prepared = self._prepared
        if prepared is not None and (prepared.tag, prepared.labels) == (tag, _key(labels)):
            attrs = waiting.inspect_container(client, prepared.container_id)
            if attrs is not None and not inspection.is_running(attrs):
                return prepared
        self.discard(client)
        action = f"creating {self.name} from {tag}"
        try:
            client.api.inspect_image(tag)
        except docker.errors.NotFound as exc:
            raise StartFailed(
                f"starting {self._settings.container_name} from {tag}: image {tag} does not "
                "exist locally (it is never pulled)"
            ) from exc
        settings = self._settings
        ensure_directories(settings.create_dirs)
        # The low-level call: ``containers.create`` cannot set ``StopTimeout``.
        host_config = client.api.create_host_config(
            network_mode=settings.network_mode,
            privileged=settings.privileged,
            # None until it runs under the controller's name: a power cut before that must
            # not have the engine start it beside the old one at boot (applied in start()).
            restart_policy={"Name": "no"},
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
            name=self.name,
            detach=True,
            environment=dict(settings.environment),
            labels=dict(labels),
            host_config=host_config,
            stop_timeout=None if stop_timeout is None else max(0, math.ceil(stop_timeout)),
        )
        logger.debug("{}: created {}", action, created["Id"])
        self._prepared = Prepared(str(created["Id"]), tag, _key(labels))
        return self._prepared

    def discard(self, client: docker.DockerClient) -> bool:
        """Remove a ``<name>-next`` (created, or left running by an interrupted swap)."""
        self._prepared = None
        try:
            client.api.remove_container(self.name, force=True)
        except docker.errors.NotFound:
            return False
        logger.info("removed {} left by an earlier swap", self.name)
        return True

    def start(
        self,
        client: docker.DockerClient,
        prepared: Prepared,
        stopped: failed_container.Stopped | None,
    ) -> None:
        """Start ``prepared``; only then does the stopped controller make way for it and it
        take the controller's name. ``stopped``: what this process last stopped."""
        settings = self._settings
        name = settings.container_name
        self._prepared = None
        try:
            client.api.start(prepared.container_id)
        except docker.errors.APIError as exc:
            self._remove_unstartable(client, prepared, exc)
            raise
        old = waiting.inspect_container(client, name)
        if old is not None and old.get("Id") != prepared.container_id:
            if inspection.is_running(old):
                # Started meanwhile by someone else: two controllers must never run.
                with suppress(docker.errors.APIError):
                    client.api.remove_container(prepared.container_id, force=True)
                raise StartFailed(f"starting {name}: container {name} is already running")
            try:
                failed_container.make_way(
                    client, old, name, settings.crash_log_lines, stopped, prepared.tag
                )
            except docker.errors.APIError as exc:
                # The new one runs already: someone else removing the old one (a prune,
                # ``docker rm``: "removal already in progress") is no reason to fail it.
                logger.warning("could not remove the stopped {}: {}", name, explanation(exc))
        self._take_name(client, prepared.container_id, name)
        if settings.restart_policy != "no":
            try:
                policy = {"Name": settings.restart_policy}
                client.api.update_container(prepared.container_id, restart_policy=policy)
            except docker.errors.APIError as exc:  # it runs; the watchdog restarts it anyway
                logger.warning("could not set {}'s restart policy: {}", name, explanation(exc))

    def _take_name(self, client: docker.DockerClient, container_id: str, name: str) -> None:
        """Rename the started container to the controller's name; while another process
        still removes the old one, the name frees up within moments: wait that long."""
        deadline = time.monotonic() + _NAME_WAIT_S
        while True:
            try:
                client.api.rename(container_id, name)
                return
            except docker.errors.APIError:
                if time.monotonic() >= deadline:
                    raise
            time.sleep(_NAME_POLL_S)

    def _remove_unstartable(
        self, client: docker.DockerClient, prepared: Prepared, exc: docker.errors.APIError
    ) -> None:
        """An unstartable container would only be in the way of the next attempt."""
        settings = self._settings
        try:
            client.api.remove_container(prepared.container_id, force=True)
        except docker.errors.APIError as cleanup_exc:
            logger.warning("could not remove unstartable {}: {}", self.name, cleanup_exc)
        if settings.privileged and inspection.refuses_privilege(explanation(exc)):
            raise PrivilegeRefused(
                f"starting {settings.container_name} from {prepared.tag}: the container "
                f"engine refuses privileged containers ({explanation(exc)}); fix the engine, "
                "or set TEG_CONTROLLER_PRIVILEGED=0 on the gateway"
            ) from exc


def image_of(attrs: Mapping[str, Any] | None) -> str | None:
    """The image name a container was created from (``Config.Image``)."""
    if attrs is None:
        return None
    image = (attrs.get("Config") or {}).get("Image")
    return image if isinstance(image, str) else None
