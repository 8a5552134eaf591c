"""The controller container's bind mounts, as the original gateway ran it (pure: no I/O).

By default (``TEG_CONTROLLER_DEFAULT_MOUNTS=1``) the controller gets what the original gave
it: its data directory at ``/root/data`` and its logs directory at ``/root/logs`` (both
read-write), and the Raspberry Pi tools :data:`PI_TOOLS` read-only at the same paths, each
**only when it exists on the host** (for a missing source Docker would create an empty
directory, and a controller would find a directory where it expects ``vcgencmd``). The
operator's ``TEG_CONTROLLER_MOUNTS`` come after the defaults; one with the same container
path replaces the default one.

The two directories are not created here: the Docker adapter creates them (mode 0755) right
before each container is created (:attr:`DockerRuntimeSettings.create_dirs`), so a directory
removed while teg-ota runs is back for the next start.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from teg_ota.app.settings import Settings
from teg_ota.app.settings_parsers import ConfigError

__all__ = [
    "CONTAINER_DATA",
    "CONTAINER_LOGS",
    "PI_TOOLS",
    "ControllerMounts",
    "controller_mounts",
]

CONTAINER_DATA = "/root/data"
CONTAINER_LOGS = "/root/logs"
PI_TOOLS: tuple[str, ...] = ("/bin/vcgencmd", "/bin/uptime", "/bin/pigs")
"""Mounted read-only at the same paths when they exist on the host."""


@dataclass(frozen=True, slots=True)
class ControllerMounts:
    mounts: tuple[str, ...]
    """Docker's ``/host:/container:mode`` form, in order: the default directories, then the
    operator's."""
    directories: tuple[str, ...]
    """Host directories of the default mounts still in force (created when missing)."""
    tools: tuple[str, ...] = ()
    """The Pi tools' read-only mounts (not in :attr:`mounts`): the Docker adapter leaves out
    one whose path is, in the image, a link to another program (``/bin/uptime`` to
    ``/bin/busybox``), which the mount would replace
    (:mod:`teg_ota.adapters.docker.image_links`)."""

    @property
    def every(self) -> tuple[str, ...]:
        """All of them, as an image without such links gets them."""
        return (*self.mounts, *self.tools)


def data_dir(settings: Settings) -> str:
    """The controller's data directory on the host (``None``: the gateway's data dir)."""
    return settings.controller_data_path or settings.data_path


def logs_dir(settings: Settings) -> str:
    """The controller's logs directory on the host (``None``: ``<controller data>/logs``)."""
    return settings.controller_logs_path or os.path.join(data_dir(settings), "logs")


def controller_mounts(
    settings: Settings,
    exists: Callable[[str], bool] = os.path.exists,
    tools: Sequence[str] = PI_TOOLS,
) -> ControllerMounts:
    """The mounts of the controller container for ``settings``; ``exists`` says whether a
    host path exists (tests pass their own, and their own ``tools``)."""
    user = tuple(settings.controller_mounts)
    if not settings.default_mounts:
        return ControllerMounts(user, ())
    taken = {_target(mount) for mount in user}
    defaults: list[str] = []
    directories: list[str] = []
    data_variable = (
        "TEG_CONTROLLER_DATA_PATH" if settings.controller_data_path else "GATEWAY_DATA_PATH"
    )
    logs_variable = "TEG_CONTROLLER_LOGS_PATH" if settings.controller_logs_path else data_variable
    for variable, source, target in (
        (data_variable, data_dir(settings), CONTAINER_DATA),
        (logs_variable, logs_dir(settings), CONTAINER_LOGS),
    ):
        if target in taken:
            continue
        if ":" in source or not source.startswith("/"):
            raise ConfigError(
                f"{variable}={source!r}: a mount source must be an absolute path without ':'"
            )
        defaults.append(f"{source}:{target}:rw")
        directories.append(source)
    present = tuple(f"{tool}:{tool}:ro" for tool in tools if tool not in taken and exists(tool))
    return ControllerMounts((*defaults, *user), tuple(directories), present)


def _target(mount: str) -> str:
    parts = mount.split(":")
    target = parts[1] if len(parts) > 1 else mount
    return target.rstrip("/") or "/"
