"""Which host-tool mounts an image can take: a bind mount over a symbolic link lands on its target.

The original gateway bind-mounts the Pi's ``/bin/vcgencmd``, ``/bin/uptime`` and ``/bin/pigs``
read-only at the same paths. In an image where ``/bin/uptime`` is a link to ``/bin/busybox``
(Alpine, busybox images) the engine mounts the host's ``uptime`` over ``/bin/busybox``: every
command of the image then runs ``uptime``, and the controller cannot even start its shell.
A link to a program of the same name (``/bin/uptime -> /usr/bin/uptime``) is harmless: the
mount replaces that program, as intended.

So before a container is created from an image not seen yet, a container is created from it
(never started, no network) and each tool path is looked up with the engine's archive ``HEAD``
(which reports a link, and its target, without following it). The answer is cached per image
id: one probe per image, not per start.
"""

from __future__ import annotations

import base64
import binascii
import json
import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

import docker
import docker.errors
from loguru import logger

from teg_ota.adapters.docker.client import short

__all__ = ["ToolMountFilter", "mount_target", "is_foreign_link"]

_PROBE_ENTRYPOINT = ["/teg-ota-image-probe"]
"""Never run: a container is only created, and an image without a command needs one."""


def mount_target(mount: str) -> str:
    parts = mount.split(":")
    return parts[1] if len(parts) > 1 else parts[0]


def is_foreign_link(path: str, stat: dict[str, Any] | None) -> bool:
    """Whether the image's ``path`` is a link to a program of another name (a mount over it
    would replace that program)."""
    if not stat:
        return False
    target = stat.get("linkTarget")
    if not isinstance(target, str) or not target:
        return False
    return posixpath.basename(target.rstrip("/")) != posixpath.basename(path)


class ToolMountFilter:
    """Keeps the tool mounts an image can take (cached per image id)."""

    def __init__(self, probe_labels: Mapping[str, str] | None = None) -> None:
        self._refused: dict[str, frozenset[str]] = {}
        self._probe_labels = dict(probe_labels or {})
        """On the probe container, so that one a kill left behind is pruned with the
        controller's stopped containers."""

    def allowed(self, client: docker.DockerClient, image: str, mounts: Sequence[str]) -> list[str]:
        """``mounts`` without those whose target is a link to another program in ``image``.

        A probe that fails keeps every mount (as the original gateway mounted them) and logs
        why: it is no reason not to start the controller."""
        if not mounts:
            return []
        try:
            image_id = str(client.api.inspect_image(image)["Id"])
        except docker.errors.APIError as exc:
            logger.warning("cannot inspect {} to check its tool paths: {}", image, short(exc))
            return list(mounts)
        refused = self._refused.get(image_id)
        if refused is None:
            targets = [mount_target(mount) for mount in mounts]
            try:
                refused = self._probe(client, image_id, targets, self._probe_labels)
            except docker.errors.APIError as exc:
                logger.warning("cannot check the tool paths of {}: {}", image, short(exc))
                return list(mounts)
            self._refused[image_id] = refused
            for target in sorted(refused):
                logger.info(
                    "not mounting the host's {} into {}: the image's {} is a link to another "
                    "program, which the mount would replace",
                    target,
                    image,
                    target,
                )
        return [mount for mount in mounts if mount_target(mount) not in refused]

    @staticmethod
    def _probe(
        client: docker.DockerClient,
        image_id: str,
        targets: Sequence[str],
        labels: Mapping[str, str],
    ) -> frozenset[str]:
        created = client.api.create_container(
            image=image_id, entrypoint=_PROBE_ENTRYPOINT, network_disabled=True, labels=dict(labels)
        )
        probe = created["Id"]
        try:
            return frozenset(t for t in targets if is_foreign_link(t, _path_stat(client, probe, t)))
        finally:
            try:
                client.api.remove_container(probe, force=True)
            except docker.errors.APIError as exc:
                logger.warning(
                    "could not remove the probe container {}: {}", probe[:12], short(exc)
                )


def _path_stat(client: docker.DockerClient, container: str, path: str) -> dict[str, Any] | None:
    """The engine's stat of ``path`` in ``container`` (a link not followed); ``None`` when
    it is not there. docker-py has no call for the archive ``HEAD``, whose answer is only a
    header (a ``get_archive`` would stream the whole file)."""
    api = client.api
    response = api.head(api._url("/containers/{0}/archive", container), params={"path": path})
    if response.status_code == 404:
        return None
    api._raise_for_status(response)
    header = response.headers.get("X-Docker-Container-Path-Stat")
    if not header:
        return None
    try:
        stat = json.loads(base64.b64decode(header))
    except (binascii.Error, ValueError):
        return None
    return stat if isinstance(stat, dict) else None
