"""``teg-ota doctor``: check each thing the gateway depends on and say how to fix it.

Docker, the repository and the broker here; the gateway's own state (the data directory,
its records, the outbox, the lock) in :mod:`teg_ota.app.doctor_state`, which only reads
and can be run on a data directory path alone. Every check yields a :class:`Check`; a
failed one names the exact path or setting and the fix (``cli`` prints them, and exits 1
when any failed).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

from teg_ota.adapters.mqtt.provision import CREDENTIALS_FILE_NAME
from teg_ota.app.container import build_container
from teg_ota.app.doctor_check import Check
from teg_ota.app.doctor_state import state_checks
from teg_ota.app.settings import Settings
from teg_ota.ports.container_runtime import ContainerRuntime, ContainerRuntimeError
from teg_ota.ports.source_repo import SourceRepo, SourceRepoError

__all__ = ["Check", "run_checks", "state_checks"]

_BROKER_TIMEOUT_S = 5.0


def run_checks(settings: Settings) -> Iterator[Check]:
    container = build_container(settings)
    yield _docker(container.runtime(), settings)
    yield _repository(container.repo(), settings)
    yield from state_checks(settings)
    yield _broker(settings)


def _docker(engine: ContainerRuntime, settings: Settings) -> Check:
    try:
        state = engine.controller_state()
        free_mb = engine.free_disk_bytes() // 2**20
    except ContainerRuntimeError as exc:
        return Check("docker", False, str(exc), "start the engine: systemctl start docker")
    detail = (
        f"engine answers; {settings.container_name} "
        f"{'runs ' + str(state.version) if state.running else 'is not running'}; "
        f"{free_mb} MiB free for images"
    )
    if free_mb < settings.min_free_disk_mb:
        return Check("docker", False, detail, "free disk space: docker image prune")
    return Check("docker", True, detail)


def _repository(source: SourceRepo, settings: Settings) -> Check:
    if not Path(settings.git_path).exists() and not settings.git_url:
        return Check(
            "repository",
            False,
            f"{settings.git_path} does not exist and TEG_CONTROLLER_GIT_URL is not set",
            "set TEG_CONTROLLER_GIT_URL or clone the controller into CONTROLLER_GIT_PATH",
        )
    if not Path(settings.git_path).exists():
        return Check("repository", True, f"will be cloned into {settings.git_path} on first use")
    try:
        commit = source.current_commit()
    except SourceRepoError as exc:
        return Check("repository", False, str(exc), "check CONTROLLER_GIT_PATH")
    return Check("repository", True, f"{settings.git_path} at {commit or 'no commit yet'}")


def _broker(settings: Settings) -> Check:
    address = f"{settings.mqtt_host}:{settings.mqtt_port}"
    try:
        with socket.create_connection(
            (settings.mqtt_host, settings.mqtt_port), timeout=_BROKER_TIMEOUT_S
        ):
            pass
    except OSError as exc:
        return Check(
            "broker",
            False,
            f"{address} unreachable ({exc.strerror or exc})",
            "check TEG_MQTT_HOST / TEG_MQTT_PORT and the network",
        )
    if not (settings.mqtt_token or settings.mqtt_username or settings.mqtt_client_id):
        if settings.provision_key and settings.provision_secret:
            stored = Path(settings.data_path) / CREDENTIALS_FILE_NAME
            found = "stored in" if stored.exists() else "provisioned on first connect into"
            return Check("broker", True, f"{address} reachable; credentials {found} {stored}")
        return Check(
            "broker",
            False,
            f"{address} reachable; no credentials",
            "set TEG_MQTT_TOKEN (or TEG_MQTT_TOKEN_FILE), or TEG_MQTT_USERNAME and "
            "TEG_MQTT_PASSWORD (or _FILE), or a client certificate",
        )
    return Check("broker", True, f"{address} reachable")
