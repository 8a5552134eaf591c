"""The composition root: the only module that names every concrete adapter.

Tests and embedding products override providers (``container.telemetry.override(...)``)
as dependency-injector intends; nothing else in teg_ota imports dependency_injector.
"""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path

from dependency_injector import containers, providers

from teg_ota.adapters.docker import DockerRuntime
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
from teg_ota.app.exclusive import Exclusive
from teg_ota.app.fingerprint import settings_fingerprint
from teg_ota.app.gateway import Gateway
from teg_ota.app.inbox import AttributeInbox, RpcInbox
from teg_ota.app.settings import Settings
from teg_ota.app.start_spread import StartSpread
from teg_ota.app.wiring import docker_runtime_settings as _docker_settings
from teg_ota.app.wiring import update_lock as _update_lock
from teg_ota.domain.model.settings import UpdateSettings
from teg_ota.domain.services.reporting import CurrentSoftware
from teg_ota.domain.services.update_service import UpdateService
from teg_ota.domain.services.watchdog import Watchdog


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
        connect_window_s=settings.mqtt_connect_window_s,
        attribute_request_window_s=settings.mqtt_attribute_request_window_s,
        jitter=settings.mqtt_jitter,
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
    start_spread = providers.Singleton(
        StartSpread, clock, settings.provided.update_start_window_s
    )
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
        spread=start_spread,
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
