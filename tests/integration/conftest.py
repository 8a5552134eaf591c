"""Fixtures for tests that need a real Docker engine and Mosquitto (see harness.py).

Session: ``docker_client``, ``test_images``. Function: ``mosquitto_factory``, ``mosquitto``,
``mqtt_recorder_factory``. Everything collected under tests/integration is marked ``integration``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")  # before testcontainers is imported
# Test modules here import helpers as ``from harness import ...`` (top-level module). pytest puts
# this folder on sys.path because it has no __init__.py; keep it working if one is ever added.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from collections.abc import Callable, Iterator
from typing import Any

import docker
import pytest
from harness import (
    BUSYBOX_IMAGE,
    MOSQUITTO_IMAGE,
    MosquittoBroker,
    MqttRecorder,
    Received,
    ensure_test_images,
    free_port,
    make_password_file,
    require_docker,
)

__all__ = [
    "BUSYBOX_IMAGE",
    "MOSQUITTO_IMAGE",
    "MosquittoBroker",
    "MqttRecorder",
    "Received",
    "free_port",
    "make_password_file",
    "require_docker",
]

_HERE = Path(__file__).resolve().parent

MosquittoFactory = Callable[..., MosquittoBroker]
RecorderFactory = Callable[..., MqttRecorder]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Hooks in a sub-folder conftest see the whole session's items: mark only ours.
    for item in items:
        if _HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    client = require_docker()
    yield client
    client.close()


@pytest.fixture(scope="session")
def test_images(docker_client: docker.DockerClient) -> list[str]:
    """Tags of the local base images, built by scripts/build-test-images.sh if missing/stale."""
    try:
        return ensure_test_images(docker_client)
    except Exception as exc:
        pytest.fail(f"could not build the test images: {exc}", pytrace=False)


@pytest.fixture
def mosquitto_factory(
    test_images: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MosquittoFactory]:
    """``start(password_file=None, port=None) -> MosquittoBroker``; all removed at teardown."""
    brokers: list[MosquittoBroker] = []

    def start(password_file: Path | None = None, port: int | None = None) -> MosquittoBroker:
        for attempt in range(3):
            broker = MosquittoBroker(
                tmp_path_factory.mktemp("mosquitto"), port=port, password_file=password_file
            )
            brokers.append(broker)
            try:
                return broker.start()
            except (RuntimeError, TimeoutError):
                # A port picked by free_port() can be taken before mosquitto binds it: retry.
                if port is not None or attempt == 2:
                    raise
                broker.remove()
        raise AssertionError("unreachable")

    yield start
    for broker in brokers:
        broker.remove()


@pytest.fixture
def mosquitto(mosquitto_factory: MosquittoFactory) -> MosquittoBroker:
    """A default broker: anonymous, 127.0.0.1:<free port>."""
    return mosquitto_factory()


@pytest.fixture
def mqtt_recorder_factory() -> Iterator[RecorderFactory]:
    """``start(broker_or_host, port=None, topics=(), **kw) -> MqttRecorder`` (started, connected).

    The first argument is a MosquittoBroker or a host name; keyword arguments go to MqttRecorder
    (username, password, client_id, version, keepalive). All are closed at teardown.
    """
    recorders: list[MqttRecorder] = []

    def start(
        broker: MosquittoBroker | str,
        port: int | None = None,
        topics: tuple[str, ...] | list[str] = (),
        timeout: float = 15.0,
        **kwargs: Any,
    ) -> MqttRecorder:
        if isinstance(broker, MosquittoBroker):
            host, port = broker.host, broker.port
        else:
            host = broker
        assert port is not None, "port is required with a host name"
        recorder = MqttRecorder(host, port, topics, **kwargs)
        recorders.append(recorder)
        return recorder.start(timeout)

    yield start
    for recorder in recorders:
        recorder.close()
