"""The seed gateway's names over the new core, so the existing TEG Gateway switches with an
import change (docs/embedding.md):

    from teg_ota.compat import GatewayDockerClient, GatewayGitClient
    from teg_ota.compat import on_msg_check_for_ota_update, restart_controller_if_needed

Everything is built lazily from the environment on first use (the seed's singletons). A
product that owns its MQTT connection calls :func:`configure` first with its own
``telemetry`` sink (any object with the TelemetrySink methods); otherwise teg-ota's own
MQTT link is started.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from teg_ota.app.container import Container, build_container
from teg_ota.app.gateway import Gateway
from teg_ota.app.settings import Settings, load_settings
from teg_ota.domain.model.errors import InvalidVersion
from teg_ota.domain.model.versions import image_tag, parse_version
from teg_ota.ports.container_runtime import ContainerRuntimeError
from teg_ota.ports.source_repo import SourceRepoError

_lock = threading.Lock()
_container: Container | None = None


class AlreadyConfigured(RuntimeError):
    """compat is a process-wide singleton: it is configured once (explicitly, or on first
    use). Two gateways over one controller and one outbox would fight each other."""


def configure(settings: Settings | None = None, **overrides: object) -> Gateway:
    """Build the process-wide gateway, once; ``overrides`` replace providers by instance.

    It also recovers an update a crash interrupted, as the runner does at start-up.
    """
    global _container  # noqa: PLW0603 - the seed's process-level singleton
    with _lock:
        if _container is not None:
            raise AlreadyConfigured("teg_ota.compat is already configured in this process")
        container = build_container(settings or load_settings(), **overrides)
        gateway: Gateway = container.gateway()
        gateway.recover()
        if "telemetry" not in overrides:
            # teg-ota's own link: act on the assignments it receives, off its thread (an
            # update builds and waits out the health grace).
            container.inbox().attach(
                lambda _topic, payload: threading.Thread(
                    target=gateway.handle_attributes, args=(payload,), daemon=True
                ).start()
            )
            container.telemetry().start()
        _container = container
        return gateway


def _get() -> Container:
    if _container is None:
        with contextlib.suppress(AlreadyConfigured):  # another thread won the race
            configure()
    assert _container is not None  # noqa: S101 - set by configure()
    return _container


def _gateway() -> Gateway:
    gateway: Gateway = _get().gateway()
    return gateway


class _Singleton:
    _instance: Any = None

    def __new__(cls) -> Any:  # noqa: ANN401 - returns the one instance of the subclass
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance


class GatewayDockerClient(_Singleton):
    """The seed's Docker client: the controller container's lifecycle."""

    @property
    def last_launched_version(self) -> str | None:
        return self.get_last_launched_controller_version()

    @property
    def docker_client(self) -> object | None:
        runtime = _get().runtime()
        client = getattr(runtime, "_client", None)  # the adapter's lazily created SDK client
        try:
            return client() if callable(client) else client
        except ContainerRuntimeError:
            return None

    def get_controller_version(self) -> str | None:
        try:
            state = _get().runtime().controller_state()
        except ContainerRuntimeError:
            return None
        return state.version if state.running else None

    def get_edge_startup_timestamp_ms(self) -> int | None:
        try:
            state = _get().runtime().controller_state()
        except ContainerRuntimeError:
            return None
        return state.started_at_ms if state.running else None

    def get_last_launched_controller_version(self) -> str | None:
        return _get().store().last_launched()

    def set_last_launched_controller_version(self, last_launched_controller_version: str) -> None:
        _get().store().set_last_launched(last_launched_controller_version)

    def is_controller_running(self) -> bool:
        try:
            return _get().runtime().controller_state().running
        except ContainerRuntimeError:
            return False

    def is_image_available(self, image_tag: str) -> bool:
        try:
            return bool(_get().runtime().image_exists(image_tag))
        except ContainerRuntimeError:
            return False

    def image_tag_for(self, version: str) -> str:
        return image_tag(_get().settings().image_prefix, parse_version(version))

    def prune_containers(self) -> None:
        try:
            _get().runtime().prune_stopped_containers()
        except ContainerRuntimeError:
            return

    def start_controller(self, version_to_launch: str) -> None:
        _gateway().update(version_to_launch)

    def start_controller_safely(self, version_to_launch: str) -> None:
        _gateway().update_safely(version_to_launch)

    def stop_controller(self) -> None:
        _gateway().stop_controller()


class GatewayGitClient(_Singleton):
    """The seed's Git client; booleans and ``None`` instead of exceptions, as the seed."""

    def execute_fetch(self) -> bool:
        try:
            _get().repo().fetch()
        except SourceRepoError:
            return False
        return True

    def execute_reset_to_commit(self, commit_hash: str) -> bool:
        try:
            _get().repo().reset_to(commit_hash)
        except SourceRepoError:
            return False
        return True

    def get_commit_for_tag(self, tag: str) -> str | None:
        return self.get_commit_from_hash_or_tag(tag)

    def get_commit_from_hash_or_tag(self, hash_or_tag: str) -> str | None:
        try:
            return str(_get().repo().resolve(parse_version(hash_or_tag).value))
        except (SourceRepoError, InvalidVersion):
            return None


def on_msg_check_for_ota_update(msg_payload: Any) -> bool:  # noqa: ANN401 - any payload
    """True when the payload was an OTA notification (and it was acted on)."""
    return _gateway().handle_attributes(msg_payload)


def restart_controller_if_needed() -> bool:
    """The watchdog tick: True when it acted (restart attempt, OTA request)."""
    return _gateway().watchdog_tick()
