"""The limits the update benchmark's figures are measured against, in the same run.

* a bare ``docker stop`` + ``docker start``: one container of the controller's image, with
  the controller's options, running; a second one created beforehand; stop the first, start
  the second. The least any swap can cost: its downtime (``die`` -> ``start``) is the swap
  downtime's reference, and stop-call -> ``start`` the cached update's overhead's.
* the engine's own ``--restart=always``: a fresh container of that image (a fresh one each
  round, so the engine's own backoff starts at its first 100 ms step) killed; ``kill`` ->
  its next ``start`` is the crash-restart reference.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors
from bench_events import EventCollector

SETTLE_S = 0.3
"""How long a reference container runs before it is stopped or killed (its shell's trap
must be installed, as the controller's is after the health grace)."""


@dataclass(frozen=True, slots=True)
class StopStart:
    downtime_s: float
    """Old ``die`` -> new ``start``."""
    total_s: float
    """The stop call issued -> new ``start``."""


class References:
    """Reference containers named ``<prefix>-ref-*``, removed after each measurement."""

    def __init__(self, client: docker.DockerClient, prefix: str, stop_grace_s: int) -> None:
        self._client = client
        self.old = f"{prefix}-ref-old"
        self.new = f"{prefix}-ref-new"
        self.always = f"{prefix}-ref-always"
        self._grace = stop_grace_s
        self.events = EventCollector(client, (self.old, self.new, self.always))

    def start(self) -> None:
        self.events.start()

    def close(self) -> None:
        self.events.close()
        self._remove(self.old, self.new, self.always)

    def _remove(self, *names: str) -> None:
        for name in names:
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                self._client.api.remove_container(name, force=True)

    def _create(
        self, image: str, name: str, restart: str = "no", command: list[str] | None = None
    ) -> str:
        """A container with the options teg-ota gives the controller (as the bench runs it:
        host network, not privileged, json-file logs with the same limits)."""
        api = self._client.api
        host_config: Any = api.create_host_config(
            network_mode="host",
            privileged=False,
            restart_policy={"Name": restart},
            log_config=docker.types.LogConfig(
                type="json-file", config={"max-size": "10m", "max-file": "5"}
            ),
        )
        created = api.create_container(
            image=image, name=name, detach=True, host_config=host_config, command=command
        )
        return str(created["Id"])

    def stop_start(self, image: str) -> StopStart:
        """One bare stop + start of a pre-created container of ``image``."""
        api = self._client.api
        self._remove(self.old, self.new)
        api.start(self._create(image, self.old))
        new_id = self._create(image, self.new)
        time.sleep(SETTLE_S)
        stop_ns = time.time_ns()
        api.stop(self.old, timeout=self._grace)
        api.start(new_id)
        die = self.events.wait_for("die", stop_ns, name=self.old)
        started = self.events.wait_for("start", die.time_ns, name=self.new)
        self._remove(self.old, self.new)
        return StopStart(
            downtime_s=(started.time_ns - die.time_ns) / 1e9,
            total_s=(started.time_ns - stop_ns) / 1e9,
        )

    def restart_always(self, image: str) -> float:
        """A crash -> running again (``die`` -> ``start``), by ``--restart=always``."""
        api = self._client.api
        self._remove(self.always)
        crash = ["sh", "-c", f"sleep {SETTLE_S}; exit 3"]
        created_ns = time.time_ns()
        api.start(self._create(image, self.always, restart="always", command=crash))
        die = self.events.wait_for("die", created_ns, name=self.always)
        started = self.events.wait_for("start", die.time_ns, name=self.always)
        self._remove(self.always)
        return (started.time_ns - die.time_ns) / 1e9
