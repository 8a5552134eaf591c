"""A real Mosquitto on 127.0.0.1 for the benchmarks, started with the Docker SDK.

The same local image the integration tests use (``teg-ota-test-mosquitto:latest``, built by
``scripts/ensure-infra.sh``), on the host network, but quiet: the tests' broker logs every
packet (``log_type all``), which would make the broker, not teg-ota, the cost a benchmark
measures. No pytest, no testcontainers: a benchmark is a plain script.
"""

from __future__ import annotations

import contextlib
import socket
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

import docker
import docker.errors

MOSQUITTO_IMAGE = "teg-ota-test-mosquitto:latest"
BUSYBOX_IMAGE = "teg-ota-test-busybox:latest"
LOCALHOST = "127.0.0.1"
_STARTUP_TIMEOUT_S = 30.0


class BenchSetupError(RuntimeError):
    """What a benchmark needs is missing (engine, local image): it cannot measure."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((LOCALHOST, port)) == 0


def docker_client() -> docker.DockerClient:
    """The engine, with the local test images present; :class:`BenchSetupError` if not."""
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        raise BenchSetupError(f"no Docker engine ({exc}); run scripts/ensure-infra.sh") from exc
    for image in (MOSQUITTO_IMAGE, BUSYBOX_IMAGE):
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound as exc:
            raise BenchSetupError(f"{image} missing; run scripts/ensure-infra.sh") from exc
    return client


class Mosquitto:
    """An anonymous broker on 127.0.0.1:<free port>; a context manager that removes it."""

    host = LOCALHOST

    def __init__(self, client: docker.DockerClient) -> None:
        self._client = client
        self._config = Path(tempfile.mkdtemp(prefix="teg-bench-mosquitto-"))
        self.port = free_port()
        self._container: Any = None

    def __enter__(self) -> Mosquitto:
        (self._config / "mosquitto.conf").write_text(
            "\n".join(
                [
                    "user root",
                    f"listener {self.port} {self.host}",
                    "persistence false",
                    "allow_anonymous true",
                    "log_dest stderr",
                    "log_type error",
                    "max_inflight_messages 20",
                    "max_queued_messages 100000",
                ]
            )
            + "\n"
        )
        self._container = self._client.containers.run(
            MOSQUITTO_IMAGE,
            name=f"teg-bench-mosquitto-{self.port}-{uuid.uuid4().hex[:6]}",
            detach=True,
            network_mode="host",
            volumes={str(self._config): {"bind": "/mosquitto/config", "mode": "ro"}},
        )
        deadline = time.monotonic() + _STARTUP_TIMEOUT_S
        while not port_open(self.port):
            if time.monotonic() > deadline:
                self.close()
                raise BenchSetupError(f"mosquitto did not listen on {self.port}")
            time.sleep(0.05)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._container is not None:
            with contextlib.suppress(docker.errors.DockerException):
                self._container.remove(force=True)
            self._container = None
        with contextlib.suppress(OSError):
            (self._config / "mosquitto.conf").unlink()
            self._config.rmdir()
