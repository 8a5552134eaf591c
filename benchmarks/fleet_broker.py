"""One real Mosquitto for the whole fleet, on the host network, sized for 10,000 clients.

As tests/integration's MosquittoBroker (same image, testcontainers, 127.0.0.1), but with
the container's open-file limit raised to the engine's hard limit (each client is a
descriptor; a limit of 1,024 would refuse most of the fleet), no connection cap, and only
warnings logged (a line per connect would cost more than the connects; so readiness is the
open port, not the notice line the tests wait for). ``restart()`` is a real restart of
the container: every connection drops, the port is closed until Mosquitto runs again.
"""

from __future__ import annotations

import os
import resource
import time
import uuid
from pathlib import Path

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")  # before testcontainers loads

import docker
from harness import MOSQUITTO_IMAGE, ensure_test_images, free_port, port_open, wait_until
from testcontainers.core.container import DockerContainer

NOFILE = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
"""Our own hard limit: dockerd's here (20,000), which a container cannot exceed."""


class FleetBroker:
    def __init__(self, config_dir: Path) -> None:
        self.port = free_port()
        config_dir.mkdir(parents=True, exist_ok=True)
        (config_dir / "mosquitto.conf").write_text(
            "\n".join(
                [
                    "user root",
                    f"listener {self.port} 127.0.0.1",
                    "max_connections -1",
                    "persistence false",
                    "allow_anonymous true",
                    "log_dest stderr",
                    "log_type error",
                    "log_type warning",
                    "log_type notice",
                    "",
                ]
            )
        )
        ensure_test_images(docker.from_env())
        self.container = (
            DockerContainer(MOSQUITTO_IMAGE)
            .with_name(f"teg-ota-fleet-mosquitto-{self.port}-{uuid.uuid4().hex[:6]}")
            .with_volume_mapping(str(config_dir), "/mosquitto/config", "ro")
            .with_kwargs(
                network_mode="host",
                ulimits=[docker.types.Ulimit(name="nofile", soft=NOFILE, hard=NOFILE)],
            )
        )

    def start(self) -> FleetBroker:
        self.container.start()
        wait_until(lambda: port_open(self.port), 30, f"mosquitto on port {self.port}")
        return self

    def restart(self) -> tuple[float, float]:
        """Stop and start the container; ``(down_at, up_at)`` in ``time.monotonic()``."""
        wrapped = self.container.get_wrapped_container()
        wrapped.stop(timeout=5)
        down = time.monotonic()
        wrapped.start()
        wait_until(lambda: port_open(self.port, timeout=0.2), 30, "mosquitto to listen again")
        return down, time.monotonic()

    def remove(self) -> None:
        try:
            self.container.stop()  # testcontainers' stop() force-removes the container
        except Exception as exc:  # noqa: BLE001 - best effort at the end of a run
            print(f"could not remove the fleet broker container: {exc}")
