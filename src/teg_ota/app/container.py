"""The composition root: the only module that names every concrete adapter.

Tests and embedding products override providers (``container.telemetry.override(...)``)
as dependency-injector intends; nothing else in teg_ota imports dependency_injector.
"""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path

from dependency_injector import containers, providers
from loguru import logger

from teg_ota.adapters.docker import DockerRuntime, DockerRuntimeSettings
from teg_ota.adapters.file_version_store import FileVersionStore
from teg_ota.adapters.git import DulwichSourceRepo, GitPackageSource
from teg_ota.adapters.mqtt import (
    CredentialsFile,
    DurableOutbox,
    GmqttLink,
    MqttSettings,
    Provisioner,
    ProvisionRequest,
)
from teg_ota.adapters.system_clock import SystemClock
from teg_ota.adapters.update_lock_file import FlockUpdateLock
from teg_ota.app.controller_mounts import CONTAINER_DATA, controller_mounts, data_dir
from teg_ota.app.exclusive import Exclusive
from teg_ota.app.fingerprint import settings_fingerprint
from teg_ota.app.gateway import Gateway
from teg_ota.app.inbox import AttributeInbox, RpcInbox
from teg_ota.app.settings import Settings
from teg_ota.domain.model.settings import UpdateSettings
from teg_ota.domain.services.reporting import CurrentSoftware
from teg_ota.domain.services.update_service import UpdateService
from teg_ota.domain.services.watchdog import Watchdog
from teg_ota.ports.container_runtime import VERSION_LABEL


def _docker_settings(settings: Settings) -> DockerRuntimeSettings:
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


def _mqtt_settings(settings: Settings) -> MqttSettings:
    token, password = settings.mqtt_secrets()
    return MqttSettings(
        host=settings.mqtt_host,
        port=settings.mqtt_port,
        token=token,
        username=settings.mqtt_username,
        password=password,
        tls=settings.mqtt_tls,
        ca_file=settings.mqtt_ca_file,
        cert_file=settings.mqtt_cert_file,
        key_file=settings.mqtt_key_file,
        client_id=settings.mqtt_client_id,
    )


def _provisioner(settings: Settings) -> Provisioner | None:
    """With a provision key and secret and no credentials configured (token, user name,
    client id, client certificate): the device's credentials come from provisioning."""
    if settings.provision_key is None or settings.provision_secret is None:
        return None
    configured = (
        settings.mqtt_token,
        settings.mqtt_token_file,
        settings.mqtt_username,
        settings.mqtt_client_id,
        settings.mqtt_cert_file,
    )
    if any(value is not None for value in configured):
        return None
    request = ProvisionRequest(
        settings.device_name or socket.gethostname() or "teg-ota-gateway",
        settings.provision_key,
        settings.provision_secret,
    )
    return Provisioner(request, CredentialsFile.in_data_path(Path(settings.data_path)))


def _update_lock(settings: Settings) -> FlockUpdateLock | None:
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


def _update_settings(settings: Settings) -> UpdateSettings:
    return dataclasses.replace(
        settings.update_settings(), fingerprint=settings_fingerprint(settings)
    )


class Container(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=Settings)

    clock = providers.Singleton(SystemClock)
    runtime = providers.Singleton(DockerRuntime, providers.Callable(_docker_settings, settings))
    repo = providers.Singleton(
        DulwichSourceRepo, path=settings.provided.git_path, url=settings.provided.git_url
    )
    store = providers.Singleton(
        FileVersionStore,
        data_path=settings.provided.data_path,
        default_version=settings.provided.default_version,
    )
    inbox = providers.Singleton(AttributeInbox)
    rpc_inbox = providers.Singleton(RpcInbox)
    outbox = providers.Singleton(
        DurableOutbox.in_data_path, providers.Callable(Path, settings.provided.data_path)
    )
    # Git is the first package source; later sources are chosen here (providers.Selector).
    source = providers.Singleton(GitPackageSource, repo)
    current_software = providers.Singleton(
        CurrentSoftware, runtime, settings.provided.sw_title
    )
    telemetry = providers.Singleton(
        GmqttLink,
        providers.Callable(_mqtt_settings, settings),
        outbox,
        current_software=current_software,
        on_attributes=inbox,
        on_rpc=rpc_inbox,
        provisioner=providers.Callable(_provisioner, settings),
    )
    update_service = providers.Singleton(
        UpdateService,
        runtime=runtime,
        source=source,
        telemetry=telemetry,
        store=store,
        clock=clock,
        settings=providers.Callable(_update_settings, settings),
        current=current_software,
        update_lock=providers.Callable(_update_lock, settings),
    )
    exclusive = providers.Singleton(Exclusive)
    watchdog = providers.Singleton(
        Watchdog,
        runtime=runtime,
        store=store,
        telemetry=telemetry,
        clock=clock,
        service=update_service,
        settings=providers.Callable(Settings.watchdog_settings, settings),
    )
    gateway = providers.Singleton(
        Gateway,
        service=update_service,
        watchdog=watchdog,
        runtime=runtime,
        store=store,
        exclusive=exclusive,
    )


def build_container(settings: Settings, **overrides: object) -> Container:
    """A container for ``settings`` with any provider overridden by an instance, e.g.
    ``build_container(settings, telemetry=my_sink)`` for a product that owns its MQTT."""
    container = Container(settings=settings)
    for name, instance in overrides.items():
        provider = getattr(container, name, None)
        if not isinstance(provider, providers.Provider):
            raise ValueError(f"no provider named {name!r} to override")
        provider.override(providers.Object(instance))
    return container


def build_gateway(settings: Settings, **overrides: object) -> Gateway:
    gateway: Gateway = build_container(settings, **overrides).gateway()
    return gateway
