"""``teg-ota doctor``: check each thing the gateway depends on and say how to fix it."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from teg_ota.app.container import build_container
from teg_ota.app.settings import Settings
from teg_ota.ports.container_runtime import ContainerRuntime, ContainerRuntimeError
from teg_ota.ports.source_repo import SourceRepo, SourceRepoError

_BROKER_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def run_checks(settings: Settings) -> Iterator[Check]:
    container = build_container(settings)
    yield _docker(container.runtime(), settings)
    yield _repository(container.repo(), settings)
    yield _data_dir(settings)
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


def _data_dir(settings: Settings) -> Check:
    path = Path(settings.data_path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".doctor-") as probe:
            probe.write(b"ok")
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        return Check(
            "data directory",
            False,
            f"{path}: {exc.strerror}",
            "make GATEWAY_DATA_PATH a writable directory",
        )
    return Check("data directory", True, f"{path} is writable")


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
        return Check(
            "broker",
            False,
            f"{address} reachable; no credentials",
            "set TEG_MQTT_TOKEN (or TEG_MQTT_TOKEN_FILE), or TEG_MQTT_USERNAME and "
            "TEG_MQTT_PASSWORD (or _FILE), or a client certificate",
        )
    return Check("broker", True, f"{address} reachable")
