"""Helpers for the integration tests: Docker engine, local test images, Mosquitto, MQTT recorder.

conftest.py turns these into fixtures. Test modules under tests/integration import the classes
and helpers from here (``from harness import MqttRecorder``), never from conftest (there are
several conftest modules; pytest does not make ``import conftest`` reliable).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Self

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")  # Ryuk's image cannot be pulled

import docker
import pytest
from gmqtt import Client as GmqttClient
from gmqtt.mqtt.constants import MQTTv311
from mqtt_thread import ThreadedMqttClient
from testcontainers.core.container import DockerContainer
from testcontainers.core.wait_strategies import LogMessageWaitStrategy

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_IMAGES_SCRIPT = REPO_ROOT / "scripts" / "build-test-images.sh"
BUSYBOX_IMAGE = "teg-ota-test-busybox:latest"
MOSQUITTO_IMAGE = "teg-ota-test-mosquitto:latest"
TEST_IMAGES = (BUSYBOX_IMAGE, MOSQUITTO_IMAGE)
MOSQUITTO_PASSWD = "/usr/bin/mosquitto_passwd"
LOCALHOST = "127.0.0.1"
_MOSQUITTO_RUNNING = re.compile(r"mosquitto version \S+ running")


# --- Docker engine and images ------------------------------------------------------------------


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def require_docker() -> docker.DockerClient:
    """A client that answered ``ping()``; else skip (fail when CI=true/1)."""
    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except Exception as exc:
        reason = (
            f"no Docker engine reachable: {type(exc).__name__}: {exc} "
            "(run scripts/ensure-infra.sh as root to start one)"
        )
        if in_ci():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return client


def build_test_images(force: bool = False) -> None:
    """Build the local base images via scripts/build-test-images.sh (no-op when up to date)."""
    cmd = ["bash", str(BUILD_IMAGES_SCRIPT), *(["--force"] if force else [])]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )


def ensure_test_images(client: docker.DockerClient) -> list[str]:
    build_test_images()
    for tag in TEST_IMAGES:
        client.images.get(tag)  # raises ImageNotFound if the script lied
    return list(TEST_IMAGES)


# --- network helpers ---------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = LOCALHOST, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# --- Mosquitto -----------------------------------------------------------------------------------


def make_password_file(path: Path, users: dict[str, str]) -> Path:
    """A Mosquitto password file made with the host's mosquitto_passwd."""
    path.unlink(missing_ok=True)
    path.touch(mode=0o600)
    for user, password in users.items():
        subprocess.run([MOSQUITTO_PASSWD, "-b", str(path), user, password], check=True)
    return path


class MosquittoBroker:
    """teg-ota-test-mosquitto on the host network at 127.0.0.1:<port>.

    ``stop()`` / ``start()`` / ``restart()`` keep the same container, hence the same port;
    ``remove()`` deletes the container (the fixtures call it at teardown).
    """

    host = LOCALHOST

    def __init__(
        self,
        config_dir: Path,
        port: int | None = None,
        password_file: Path | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        self.port = port if port is not None else free_port()
        self.config_dir = config_dir
        self.startup_timeout = startup_timeout
        config_dir.mkdir(parents=True, exist_ok=True)
        lines = [
            "user root",
            f"listener {self.port} {self.host}",
            "persistence false",
            "log_dest stderr",
            "log_type all",
        ]
        if password_file is None:
            lines.append("allow_anonymous true")
        else:
            shutil.copyfile(password_file, config_dir / "passwd")
            lines += ["allow_anonymous false", "password_file /mosquitto/config/passwd"]
        (config_dir / "mosquitto.conf").write_text("\n".join(lines) + "\n")
        self.container = (
            DockerContainer(MOSQUITTO_IMAGE)
            .with_name(f"teg-ota-test-mosquitto-{self.port}-{uuid.uuid4().hex[:6]}")
            .with_volume_mapping(config_dir, "/mosquitto/config", "ro")
            # with_kwargs replaces earlier kwargs: call it once.
            .with_kwargs(network_mode="host")
            .waiting_for(
                LogMessageWaitStrategy(_MOSQUITTO_RUNNING).with_startup_timeout(
                    int(startup_timeout)
                )
            )
        )
        self._starts = 0

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def logs(self) -> str:
        out, err = self.container.get_logs()
        return (out + err).decode(errors="replace")

    def start(self) -> Self:
        if self._starts == 0:
            self.container.start()  # waits for the "running" log line
        else:
            self.container.get_wrapped_container().start()
            wait_until(
                lambda: len(_MOSQUITTO_RUNNING.findall(self.logs())) > self._starts,
                self.startup_timeout,
                f"mosquitto on port {self.port} to log 'running' again",
            )
        self._starts += 1
        wait_until(lambda: port_open(self.port), self.startup_timeout, f"port {self.port}")
        return self

    def stop(self) -> None:
        self.container.get_wrapped_container().stop(timeout=5)
        wait_until(lambda: not port_open(self.port), 10, f"port {self.port} to close")

    def restart(self) -> Self:
        self.stop()
        return self.start()

    def remove(self) -> None:
        with contextlib.suppress(Exception):
            self.container.stop()  # testcontainers' stop() force-removes the container


# --- MQTT recorder -------------------------------------------------------------------------------


class Received(NamedTuple):
    topic: str
    payload: bytes

    def text(self) -> str:
        return self.payload.decode()

    def json(self) -> Any:
        return json.loads(self.payload)


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic filter matching with ``+`` and ``#``."""
    flt, parts = topic_filter.split("/"), topic.split("/")
    for i, level in enumerate(flt):
        if level == "#":
            return True
        if i >= len(parts) or (level != "+" and level != parts[i]):
            return False
    return len(flt) == len(parts)


class MqttRecorder(ThreadedMqttClient):
    """Synchronous wrapper around a gmqtt client running on its own event loop thread.

    Subscribes to ``topics`` with QoS 1 (again after every reconnect), records every message
    as ``Received(topic, payload)`` in arrival order, and publishes with ``publish()``.
    """

    _label = "recorder"

    def __init__(
        self,
        host: str,
        port: int,
        topics: Iterable[str] = (),
        *,
        username: str | None = None,
        password: str | None = None,
        client_id: str | None = None,
        version: int = MQTTv311,
        keepalive: int = 30,
    ) -> None:
        super().__init__(
            host,
            port,
            client_id or f"recorder-{uuid.uuid4().hex[:8]}",
            username=username,
            password=password,
            keepalive=keepalive,
            version=version,
        )
        self._topics: list[str] = list(topics)
        self._messages: list[Received] = []
        self._listeners: list[Callable[[Received], None]] = []

    # -- API ------------------------------------------------------------------------------------
    @property
    def client(self) -> GmqttClient:
        assert self._client is not None, "recorder not started"
        return self._client

    @property
    def messages(self) -> list[Received]:
        with self._cond:
            return list(self._messages)

    def clear(self) -> None:
        with self._cond:
            self._messages.clear()

    def subscribe(self, *topics: str, timeout: float = 10.0) -> None:
        self._topics += topics
        self._run(self._subscribe(topics), timeout)
        self.wait_subscribed(timeout)

    def wait_subscribed(self, timeout: float = 10.0) -> None:
        self._wait_ready(timeout)

    def publish(
        self,
        topic: str,
        payload: bytes | str | dict[str, Any] | list[Any],
        qos: int = 1,
        *,
        retain: bool = False,
        wait_ack: bool = True,
        timeout: float = 10.0,
    ) -> None:
        if isinstance(payload, dict | list):
            payload = json.dumps(payload)
        self._publish_blocking(
            topic, payload, qos=qos, retain=retain, wait_ack=wait_ack, timeout=timeout
        )

    def add_listener(self, callback: Callable[[Received], None]) -> None:
        """Call ``callback(message)`` for each message, after recording it, on the loop thread.

        It may call ``publish()`` (e.g. to answer an RPC request); it must not block. Exceptions
        are kept in ``listener_errors``.
        """
        self._listeners.append(callback)

    def wait_for(
        self, predicate: Callable[[list[Received]], bool], timeout: float = 10.0
    ) -> list[Received]:
        """Block until ``predicate(messages so far)`` is true; return those messages."""
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self._messages), timeout):
                raise TimeoutError(
                    f"predicate not satisfied within {timeout}s; recorded: {self._messages!r}"
                )
            return list(self._messages)

    def wait_for_message(self, topic_filter: str, timeout: float = 10.0) -> Received:
        """The first recorded message whose topic matches ``topic_filter``."""
        msgs = self.wait_for(
            lambda ms: any(topic_matches(topic_filter, m.topic) for m in ms), timeout
        )
        return next(m for m in msgs if topic_matches(topic_filter, m.topic))

    def on(self, topic_filter: str) -> list[Received]:
        return [m for m in self.messages if topic_matches(topic_filter, m.topic)]

    # -- ThreadedMqttClient hooks (loop thread) -------------------------------------------------
    def _subscriptions(self) -> Sequence[str]:
        return self._topics

    def _not_ready_message(self, timeout: float) -> str:
        return f"no SUBACK within {timeout}s for {self._topics}"

    def _handle_message(
        self, client: GmqttClient, topic: str, payload: bytes, properties: Any
    ) -> None:
        message = Received(topic, payload)
        with self._cond:
            self._messages.append(message)
            self._cond.notify_all()
        for listener in self._listeners:
            self._guarded(listener, message)
