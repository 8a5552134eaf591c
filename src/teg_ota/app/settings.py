"""Every setting of the gateway: environment variables, optionally a TOML file (env wins).

The variable names are a contract with operators' scripts; docs/configuration.md lists
them all. A bad value stops start-up with one line naming the variable, before anything
(Docker, Git, the broker) is touched.

Secrets (the access token, the MQTT password) may come from a file instead
(``TEG_MQTT_TOKEN_FILE``, ``TEG_MQTT_PASSWORD_FILE``: the variable's name plus ``_FILE``),
read once (settings_sources.py), so that no secret sits in the environment. No secret is
ever part of an error message or a ``repr``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from teg_ota.app import settings_parsers as p
from teg_ota.app.local_zone import local_zone
from teg_ota.app.settings_aliases import ALIASES, read_aliases
from teg_ota.app.settings_parsers import ConfigError
from teg_ota.app.settings_sources import (
    MAX_SECRET_FILE_BYTES,
    read_secret_file,
    read_secret_files,
    read_toml,
    token_file_to_provision,
)

__all__ = [
    "ALIASES",
    "MAX_SECRET_FILE_BYTES",
    "VARIABLES",
    "ConfigError",
    "Settings",
    "load_settings",
    "read_secret_file",
    "unknown_variables",
]
from teg_ota.domain.core.backoff import BackoffPolicy
from teg_ota.domain.model import fetch_retry_policy
from teg_ota.domain.model.fetch_retry_policy import FetchRetryPolicy
from teg_ota.domain.model.settings import UpdateSettings, WatchdogSettings

T = TypeVar("T")


DEFAULT_GIT_PATH = "/opt/teg/controller"


@dataclass(frozen=True, slots=True)
class Settings:
    mqtt_host: str = "localhost"
    mqtt_port: int = 1883
    mqtt_token: str | None = field(default=None, repr=False)
    mqtt_token_file: str | None = None
    mqtt_username: str | None = field(default=None, repr=False)
    mqtt_password: str | None = field(default=None, repr=False)
    mqtt_password_file: str | None = None
    mqtt_tls: bool = False
    mqtt_ca_file: str | None = None
    mqtt_cert_file: str | None = None
    mqtt_key_file: str | None = None
    mqtt_client_id: str | None = None
    mqtt_connect_window_s: float = 10.0
    mqtt_attribute_request_window_s: float = 2.0
    mqtt_jitter: bool = True
    """Spreading a fleet's MQTT traffic (adapters/mqtt/reconnect.py); off: for comparison."""
    data_path: str = "/var/lib/teg-ota"
    git_path: str = DEFAULT_GIT_PATH
    git_url: str | None = field(default=None, repr=False)
    default_version: str | None = None
    container_name: str = "teg_controller"
    image_prefix: str = "teg-controller-"
    privileged: bool = True
    network_mode: str = "host"
    restart_policy: str = "no"
    controller_env: Mapping[str, str] = field(default_factory=dict)
    controller_mounts: tuple[str, ...] = ()
    prune_all_containers: bool = False
    build_context: str | None = None
    """Relative to the work tree; ``None``: ``docker/`` when it holds a Dockerfile, else the
    work tree (the original gateway's layout first)."""
    dockerfile: str = "Dockerfile"
    """Relative to the build context."""
    build_args: Mapping[str, str] = field(default_factory=dict, repr=False)
    log_driver: str = "json-file"
    log_options: Mapping[str, str] = field(
        default_factory=lambda: {"max-size": "10m", "max-file": "5"}
    )
    controller_data_path: str | None = None
    """Host directory mounted at ``/root/data``; ``None``: the gateway's data dir, as the
    original gateway did (the controller shares files with it there)."""
    controller_logs_path: str | None = None
    """Host directory mounted at ``/root/logs``; ``None``: ``<controller data>/logs``."""
    default_mounts: bool = True
    """The original's mounts: data, logs, and the Pi tools that exist on the host."""
    crash_log_lines: int = 50
    uptime_telemetry_s: float = 20.0
    """``ms_since_controller_startup`` every this many seconds; 0 turns it off."""
    provision_key: str | None = field(default=None, repr=False)
    provision_secret: str | None = field(default=None, repr=False)
    device_name: str | None = None
    sw_title: str | None = None
    health_grace_s: float = 30.0
    health_timeout_s: float = 120.0
    stop_grace_s: float = 60.0
    build_timeout_s: float = 1800.0
    min_free_disk_mb: int = 512
    keep_older_images: int = 1
    max_interrupted_attempts: int = 3
    allow_moved_tags: bool = False
    update_lock_file: str | None = "update.lock"
    """Relative: in the controller data dir; ``None`` (an empty variable): no lock."""
    update_windows: str = ""
    update_lock_max_wait_s: float | None = None
    update_lock_force_after_wait: bool = False
    update_start_window_s: float = 5.0
    git_fetch_retries: int = fetch_retry_policy.DEFAULT_RETRIES
    git_fetch_retry_initial_s: float = fetch_retry_policy.DEFAULT_INITIAL_S
    git_fetch_retry_max_s: float = fetch_retry_policy.DEFAULT_MAX_S
    crash_rollback_within_s: float = 0.0
    backoff_initial_s: float = 2.0
    backoff_max_s: float = 300.0
    backoff_reset_s: float = 600.0
    watchdog_interval_s: float = 10.0
    log_level: str = "INFO"
    log_format: str = "text"
    control_socket: str | None = None
    """The runner's local control socket (issue 13); ``None``: ``<data dir>/teg-ota.sock``.
    An empty variable turns the channel off."""
    agent_telemetry_s: float = 60.0
    """The agent's own telemetry (outbox, disk, images) every this many seconds; 0: off."""
    original_names: tuple[str, ...] = ()
    """The original gateway's variables that were read (logged once at start-up)."""

    def mqtt_secrets(self) -> tuple[str | None, str | None]:
        """``(token, password)``. :func:`load_settings` has read the ``*_FILE`` ones
        already; a ``Settings`` made in code with only a file path gets it read here.
        Raises :class:`ConfigError` as :func:`read_secret_file` does."""
        token, password = self.mqtt_token, self.mqtt_password
        if token is None and self.mqtt_token_file:
            token = read_secret_file("TEG_MQTT_TOKEN_FILE", self.mqtt_token_file)
        if password is None and self.mqtt_password_file:
            password = read_secret_file("TEG_MQTT_PASSWORD_FILE", self.mqtt_password_file)
        return token, password

    def control_socket_path(self) -> str | None:
        """Where the runner listens and the CLI asks; ``None``: the channel is off."""
        if self.control_socket is None:
            return str(Path(self.data_path) / "teg-ota.sock")
        return self.control_socket or None

    def update_settings(self) -> UpdateSettings:
        return UpdateSettings(
            image_prefix=self.image_prefix,
            sw_title=self.sw_title,
            health_grace_s=self.health_grace_s,
            health_timeout_s=self.health_timeout_s,
            stop_grace_s=self.stop_grace_s,
            min_free_disk_bytes=self.min_free_disk_mb * 2**20,
            keep_older_images=self.keep_older_images,
            max_interrupted_attempts=self.max_interrupted_attempts,
            allow_moved_tags=self.allow_moved_tags,
            update_windows=self.update_windows,
            timezone=local_zone(),
            swap_max_wait_s=self.update_lock_max_wait_s,
            swap_force_after_wait=self.update_lock_force_after_wait,
            fetch_retry=FetchRetryPolicy(
                self.git_fetch_retries, self.git_fetch_retry_initial_s, self.git_fetch_retry_max_s
            ),
        )

    def watchdog_settings(self) -> WatchdogSettings:
        return WatchdogSettings(
            backoff=BackoffPolicy(
                initial_s=self.backoff_initial_s,
                max_s=self.backoff_max_s,
                reset_after_s=self.backoff_reset_s,
            ),
            crash_rollback_within_s=self.crash_rollback_within_s,
        )


# --------------------------------------------------------------------- parsing


# variable name -> (field name, parser)
VARIABLES: dict[str, tuple[str, Callable[[str], object]]] = {
    "TEG_MQTT_HOST": ("mqtt_host", p.matching(re.compile(r"[A-Za-z0-9.:\[\]-]{1,253}"), "host")),
    "TEG_MQTT_PORT": ("mqtt_port", p.port),
    "TEG_MQTT_TOKEN": ("mqtt_token", p.optional),
    "TEG_MQTT_TOKEN_FILE": ("mqtt_token_file", p.optional),
    "TEG_MQTT_USERNAME": ("mqtt_username", p.optional),
    "TEG_MQTT_PASSWORD": ("mqtt_password", p.optional),
    "TEG_MQTT_PASSWORD_FILE": ("mqtt_password_file", p.optional),
    "TEG_MQTT_TLS": ("mqtt_tls", p.boolean),
    "TEG_MQTT_CA_FILE": ("mqtt_ca_file", p.existing_file),
    "TEG_MQTT_CERT_FILE": ("mqtt_cert_file", p.existing_file),
    "TEG_MQTT_KEY_FILE": ("mqtt_key_file", p.existing_file),
    "TEG_MQTT_CLIENT_ID": ("mqtt_client_id", p.optional),
    "TEG_MQTT_CONNECT_WINDOW_S": ("mqtt_connect_window_s", p.seconds),
    "TEG_MQTT_ATTRIBUTE_REQUEST_WINDOW_S": ("mqtt_attribute_request_window_s", p.seconds),
    "TEG_MQTT_JITTER": ("mqtt_jitter", p.boolean),
    "GATEWAY_DATA_PATH": ("data_path", p.text),
    "CONTROLLER_GIT_PATH": ("git_path", p.text),
    "TEG_CONTROLLER_GIT_URL": ("git_url", p.optional),
    "TEG_DEFAULT_CONTROLLER_VERSION": ("default_version", p.version),
    "TEG_CONTROLLER_CONTAINER": ("container_name", p.matching(p.CONTAINER_RE, "container name")),
    "TEG_CONTROLLER_IMAGE_PREFIX": ("image_prefix", p.matching(p.PREFIX_RE, "image prefix")),
    "TEG_CONTROLLER_PRIVILEGED": ("privileged", p.boolean),
    "TEG_CONTROLLER_NETWORK_MODE": ("network_mode", p.matching(p.NETWORK_RE, "network mode")),
    "TEG_CONTROLLER_RESTART_POLICY": ("restart_policy", p.choice(*p.RESTART_POLICIES)),
    "TEG_CONTROLLER_ENV": ("controller_env", p.env_map),
    "TEG_CONTROLLER_MOUNTS": ("controller_mounts", p.mounts),
    "TEG_PRUNE_ALL_CONTAINERS": ("prune_all_containers", p.boolean),
    "TEG_CONTROLLER_BUILD_CONTEXT": ("build_context", p.relative_path("build context")),
    "TEG_CONTROLLER_DOCKERFILE": ("dockerfile", p.relative_path("Dockerfile path")),
    "TEG_CONTROLLER_BUILD_ARGS": ("build_args", p.env_map),
    "TEG_CONTROLLER_LOG_DRIVER": ("log_driver", p.matching(p.LOG_DRIVER_RE, "log driver")),
    "TEG_CONTROLLER_LOG_OPTIONS": ("log_options", p.log_options),
    "TEG_CONTROLLER_DATA_PATH": ("controller_data_path", p.absolute_path),
    "TEG_CONTROLLER_LOGS_PATH": ("controller_logs_path", p.absolute_path),
    "TEG_CONTROLLER_DEFAULT_MOUNTS": ("default_mounts", p.boolean),
    "TEG_CRASH_LOG_LINES": ("crash_log_lines", p.count),
    "TEG_UPTIME_TELEMETRY_S": ("uptime_telemetry_s", p.seconds),
    "TEG_PROVISION_KEY": ("provision_key", p.optional),
    "TEG_PROVISION_SECRET": ("provision_secret", p.optional),
    "TEG_DEVICE_NAME": ("device_name", p.matching(p.DEVICE_NAME_RE, "device name")),
    "TEG_SW_TITLE": ("sw_title", p.optional),
    "TEG_ALLOW_MOVED_TAGS": ("allow_moved_tags", p.boolean),
    "TEG_UPDATE_LOCK_FILE": ("update_lock_file", p.lock_file),
    "TEG_UPDATE_WINDOWS": ("update_windows", p.update_windows),
    "TEG_UPDATE_LOCK_MAX_WAIT_S": ("update_lock_max_wait_s", p.optional_positive_seconds),
    "TEG_UPDATE_LOCK_FORCE_AFTER_WAIT": ("update_lock_force_after_wait", p.boolean),
    "TEG_UPDATE_START_WINDOW_S": ("update_start_window_s", p.seconds),
    "TEG_GIT_FETCH_RETRIES": ("git_fetch_retries", p.count),
    "TEG_GIT_FETCH_RETRY_INITIAL_S": ("git_fetch_retry_initial_s", p.positive_seconds),
    "TEG_GIT_FETCH_RETRY_MAX_S": ("git_fetch_retry_max_s", p.positive_seconds),
    "TEG_CRASH_ROLLBACK_WITHIN_S": ("crash_rollback_within_s", p.seconds),
    "TEG_HEALTH_GRACE_S": ("health_grace_s", p.seconds),
    "TEG_HEALTH_TIMEOUT_S": ("health_timeout_s", p.seconds),
    "TEG_STOP_GRACE_S": ("stop_grace_s", p.seconds),
    "TEG_BUILD_TIMEOUT_S": ("build_timeout_s", p.positive_seconds),
    "TEG_MIN_FREE_DISK_MB": ("min_free_disk_mb", p.count),
    "TEG_KEEP_OLDER_IMAGES": ("keep_older_images", p.count),
    "TEG_MAX_INTERRUPTED_ATTEMPTS": ("max_interrupted_attempts", p.positive_count),
    "TEG_BACKOFF_INITIAL_S": ("backoff_initial_s", p.positive_seconds),
    "TEG_BACKOFF_MAX_S": ("backoff_max_s", p.positive_seconds),
    "TEG_BACKOFF_RESET_S": ("backoff_reset_s", p.positive_seconds),
    "TEG_WATCHDOG_INTERVAL_S": ("watchdog_interval_s", p.positive_seconds),
    "TEG_LOG_LEVEL": ("log_level", p.log_level),
    "TEG_LOG_FORMAT": ("log_format", p.choice("text", "json")),
    "TEG_CONTROL_SOCKET": ("control_socket", p.control_socket),
    "TEG_AGENT_TELEMETRY_S": ("agent_telemetry_s", p.seconds),
}

_SECRET_VARIABLES = frozenset(
    {
        "TEG_MQTT_TOKEN",
        "TEG_MQTT_USERNAME",
        "TEG_MQTT_PASSWORD",
        "TEG_CONTROLLER_ENV",
        "TEG_CONTROLLER_GIT_URL",
        "TEG_CONTROLLER_BUILD_ARGS",
        "TEG_PROVISION_KEY",
        "TEG_PROVISION_SECRET",
    }
)
"""Never echoed in an error (nor in a ``repr``)."""
_UNSTRIPPED_FIELDS = frozenset({"mqtt_token", "mqtt_username", "mqtt_password"})
"""Taken as they are: white space may be part of a credential."""


def load_settings(
    environ: Mapping[str, str] | None = None, config_file: str | Path | None = None
) -> Settings:
    """Settings from a TOML file (keys are the variable names) overridden by ``environ``."""
    environ = os.environ if environ is None else environ
    raw: dict[str, str] = {}
    if config_file is not None:
        raw.update(read_toml(Path(config_file), VARIABLES))
    raw.update({name: environ[name] for name in VARIABLES if name in environ})
    originals = read_aliases(environ, raw, DEFAULT_GIT_PATH)
    token_file_to_provision(raw, originals)
    values: dict[str, object] = {"original_names": originals}
    for name, text in raw.items():
        field_name, parse = VARIABLES[name]
        try:
            values[field_name] = parse(text if field_name in _UNSTRIPPED_FIELDS else text.strip())
        except ValueError as exc:
            shown = "***" if name in _SECRET_VARIABLES else repr(text[:80])
            raise ConfigError(f"{name}={shown}: {exc}") from None
    read_secret_files(values)
    settings = Settings(**values)  # type: ignore[arg-type]
    _check_consistency(settings)
    return settings


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """``TEG_*`` variables that are set but mean nothing (a typo silently ignored would
    leave a default in force)."""
    environ = os.environ if environ is None else environ
    return sorted(
        name
        for name in environ
        if name.startswith("TEG_") and name not in VARIABLES and name not in ALIASES
    )


def _check_consistency(settings: Settings) -> None:
    if settings.backoff_max_s < settings.backoff_initial_s:
        raise ConfigError("TEG_BACKOFF_MAX_S: must not be smaller than TEG_BACKOFF_INITIAL_S")
    if settings.git_fetch_retry_max_s < settings.git_fetch_retry_initial_s:
        raise ConfigError("TEG_GIT_FETCH_RETRY_MAX_S: must not be smaller than ..._INITIAL_S")
    if settings.mqtt_token is not None and settings.mqtt_username is not None:
        raise ConfigError(
            "TEG_MQTT_TOKEN(_FILE) and TEG_MQTT_USERNAME: set one of them, not both (the "
            "access token is the MQTT user name; a user name is for MQTT basic credentials)"
        )
    if settings.mqtt_password is not None and settings.mqtt_username is None:
        raise ConfigError("TEG_MQTT_PASSWORD(_FILE): needs TEG_MQTT_USERNAME")
    if (settings.provision_key is None) != (settings.provision_secret is None):
        raise ConfigError("TEG_PROVISION_KEY and TEG_PROVISION_SECRET: set both or neither")
    if bool(settings.mqtt_cert_file) != bool(settings.mqtt_key_file):
        raise ConfigError("TEG_MQTT_CERT_FILE and TEG_MQTT_KEY_FILE: set both or neither")
    if (settings.mqtt_cert_file or settings.mqtt_ca_file) and not settings.mqtt_tls:
        raise ConfigError("TEG_MQTT_TLS: certificates are configured but TLS is off (set 1)")
    if not settings.data_path.startswith("/") or not settings.git_path.startswith("/"):
        raise ConfigError("GATEWAY_DATA_PATH and CONTROLLER_GIT_PATH must be absolute paths")
