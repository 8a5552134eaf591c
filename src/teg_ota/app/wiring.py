"""The composition without dependency-injector: the Docker runtime's settings and the
controller's update lock, derived from :class:`~teg_ota.app.settings.Settings`, and the two
read-only ports ``teg-ota status`` needs.

The container (:mod:`teg_ota.app.container`, the composition root) provides the same
runtime settings and lock from here; ``status`` (:mod:`teg_ota.app.cli_status`) builds the
runtime and the store with :func:`status_ports` instead of the whole composition, without
dependency-injector, MQTT or Git (issue 14). So the derivation lives here, once, for both,
and these two modules are the only ones that name concrete adapters.
"""

from __future__ import annotations

from pathlib import Path

from loguru import logger

from teg_ota.adapters.docker import DockerRuntime, DockerRuntimeSettings
from teg_ota.adapters.file_version_store import FileVersionStore
from teg_ota.adapters.update_lock_file import FlockUpdateLock
from teg_ota.app.controller_mounts import CONTAINER_DATA, controller_mounts, data_dir
from teg_ota.app.settings import Settings
from teg_ota.ports.container_runtime import VERSION_LABEL


def docker_runtime_settings(settings: Settings) -> DockerRuntimeSettings:
    mounts = controller_mounts(settings)
    return DockerRuntimeSettings(
        container_name=settings.container_name,
        image_prefix=settings.image_prefix,
        network_mode=settings.network_mode,
        privileged=settings.privileged,
        restart_policy=settings.restart_policy,
        environment=dict(settings.controller_env),
        mounts=mounts.mounts,
        tool_mounts=mounts.tools,
        create_dirs=mounts.directories,
        stop_timeout_s=settings.stop_grace_s,
        build_timeout_s=settings.build_timeout_s,
        prune_label=None if settings.prune_all_containers else VERSION_LABEL,
        build_context=settings.build_context,
        dockerfile=settings.dockerfile,
        build_args=dict(settings.build_args),
        log_driver=settings.log_driver,
        log_options=dict(settings.log_options),
        crash_log_lines=settings.crash_log_lines,
    )


def update_lock(settings: Settings) -> FlockUpdateLock | None:
    """The controller's update lock, in its data dir (``/root/data`` inside) unless
    absolute; ``None`` when the setting is empty."""
    if settings.update_lock_file is None:
        return None
    path = Path(data_dir(settings)) / settings.update_lock_file
    data_mount = f"{data_dir(settings)}:{CONTAINER_DATA}:rw"
    if not Path(settings.update_lock_file).is_absolute() and (
        data_mount not in controller_mounts(settings).mounts
    ):
        logger.warning(
            "the update lock {} is not in a directory mounted into the controller (the "
            "default /root/data mount is off or replaced): the controller cannot hold it; "
            "set TEG_UPDATE_LOCK_FILE to a path it sees, or empty for no lock",
            path,
        )
    return FlockUpdateLock(path)


def status_ports(settings: Settings) -> tuple[DockerRuntime, FileVersionStore]:
    """The runtime and the version store, as the container provides them."""
    runtime = DockerRuntime(docker_runtime_settings(settings))
    store = FileVersionStore(settings.data_path, default_version=settings.default_version)
    return runtime, store
