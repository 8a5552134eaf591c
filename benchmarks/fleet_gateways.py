"""The simulated gateways: teg-ota's real link, attribute handling and update service.

Each gateway is what app/container.py composes, minus Docker and Git: the real
:class:`GmqttLink` (session, backoff, jitter, outbox in a tmpfs directory), the runner's
attribute handling (parse, then offer to the :class:`Gateway`: its update start spread,
then its one :class:`Exclusive`, latest wins), the real :class:`UpdateService` (its Git
fetch retry) and :class:`Watchdog`, over the unit tests'
FakeRuntime and FakeStore and an :class:`HttpSource` whose ``resolve`` is a real HTTP fetch
from the shared Git origin (fleet_server.GitOrigin), so a rate limit there is a
:class:`FetchFailed` here as a Git remote's would be (adapters/git/source.py). Every link
runs on the one loop of :class:`Fleet` (``GmqttLink.start(loop=...)``), no thread per link.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import inspect
import json
import random
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fleet_host import CpuSlots, RealClock, RunnerThread
from tests.unit.fakes import PREFIX, FakeRuntime, FakeStore

from teg_ota.adapters.mqtt import DurableOutbox, GmqttLink, MqttSettings
from teg_ota.app.exclusive import Exclusive
from teg_ota.app.gateway import Gateway
from teg_ota.app.settings import Settings
from teg_ota.domain.core.ota_messages import OtaDeleted, OtaRequest, parse_ota_message
from teg_ota.domain.model import errors
from teg_ota.domain.model.fetch_retry_policy import FetchRetryPolicy
from teg_ota.domain.model.package import BuildContext, PackageRef, Staged
from teg_ota.domain.model.settings import UpdateSettings, WatchdogSettings
from teg_ota.domain.model.versions import image_tag, parse_version
from teg_ota.domain.services.reporting import CurrentSoftware
from teg_ota.domain.services.update_service import UpdateService
from teg_ota.domain.services.watchdog import Watchdog

SW_TITLE = "teg-controller"
TRANSIENT: type[Exception] = getattr(errors, "SourceRateLimited", errors.FetchFailed)
"""What a 429 / 5xx from the origin raises: the transient source fault the retry is for."""


class HttpSource:
    """A PackageSource whose fetch is one HTTP GET of the shared origin's tags."""

    def __init__(self, url: str) -> None:
        self._url = url

    def resolve(self, package: PackageRef) -> str:
        try:
            with urllib.request.urlopen(self._url, timeout=30) as answer:  # noqa: S310 - local
                tags: dict[str, str] = json.load(answer)["tags"]
        except urllib.error.HTTPError as exc:
            raise TRANSIENT(f"the origin answered {exc.code}") from None
        except OSError as exc:
            raise errors.FetchFailed(f"the origin is unreachable: {exc}") from None
        commit = tags.get(package.version.value)
        if commit is None:
            raise errors.UnknownVersion(f"unknown version {package.version.value!r}")
        return commit

    def stage(
        self, package: PackageRef, digest: str, on_progress: Callable[[str], None] | None = None
    ) -> Staged:
        return BuildContext("/fleet/controller")

    def release(self, staged: Staged) -> None:
        """A build context stays."""


def _start_spread() -> Callable[..., object] | None:
    """The Gateway's update start spread (issue 16): looked up, not imported, because it
    moved between modules while issue 16 was written; ``None``: the Gateway has none."""
    if "spread" not in inspect.signature(Gateway).parameters:
        return None
    for module in ("teg_ota.app.start_spread", "teg_ota.domain.services.start_spread"):
        with contextlib.suppress(ImportError):
            found: Callable[..., object] = importlib.import_module(module).StartSpread
            return found
    return None


def default_of(name: str, fallback: float) -> float:
    """The runner's default for setting ``name`` (app/settings.py), as an operator gets it."""
    for f in dataclasses.fields(Settings):
        if f.name == name and isinstance(f.default, int | float):
            return float(f.default)
    return fallback


@dataclasses.dataclass(frozen=True)
class FleetSettings:
    jitter: bool = True
    update_start_window_s: float = default_of("update_start_window_s", 0.0)
    health_grace_s: float = 0.5
    seed: int = 16


class SimulatedGateway:
    def __init__(
        self,
        index: int,
        token: str,
        port: int,
        git_url: str,
        data: Path,
        fleet: FleetSettings,
        host: tuple[CpuSlots, RunnerThread],
    ) -> None:
        slots, self._runner = host
        clock = RealClock(slots)
        self.runtime = FakeRuntime(clock)  # type: ignore[arg-type]
        self.runtime.add_image(image_tag(PREFIX, parse_version("v1.0")), "v1.0", "1" * 40)
        self.runtime.start_existing(image_tag(PREFIX, parse_version("v1.0")))
        store = FakeStore()
        store.launched = "v1.0"
        store.good = "v1.0"
        current = CurrentSoftware(self.runtime, SW_TITLE)
        settings = MqttSettings(
            host="127.0.0.1", port=port, token=token, client_id=f"gw-{index}", jitter=fleet.jitter
        )
        self.link = GmqttLink(
            settings,
            DurableOutbox.in_data_path(data),
            current_software=current,
            on_attributes=self._on_attributes,
            rng=random.Random(fleet.seed * 100_003 + index),  # noqa: S311 - seeded, not crypto
        )
        update = UpdateSettings(
            image_prefix=PREFIX,
            sw_title=SW_TITLE,
            health_grace_s=fleet.health_grace_s,
            health_timeout_s=fleet.health_grace_s * 4,
        )
        # Without jitter: the schedule before issue 16, no start spread and no fetch retry.
        if not fleet.jitter:
            update = dataclasses.replace(update, fetch_retry=FetchRetryPolicy(retries=0))
        service = UpdateService(
            self.runtime, HttpSource(git_url), self.link, store, clock, update, current
        )
        # The update's CPU work in one of the simulator's slots (fleet_host.py).
        service.handle_request = slots.wrap(service.handle_request)  # type: ignore[method-assign]
        watchdog = Watchdog(self.runtime, store, self.link, clock, service, WatchdogSettings())
        spread: dict[str, Any] = {}
        if fleet.jitter and (start_spread := _start_spread()) is not None:
            rng = random.Random(fleet.seed * 100_019 + index)  # noqa: S311
            spread["spread"] = start_spread(clock, fleet.update_start_window_s, rng)
        exclusive = Exclusive(f"gw-{index}")
        self.gateway = Gateway(service, watchdog, self.runtime, store, exclusive, **spread)

    def _on_attributes(self, topic: str, payload: bytes) -> None:
        """As the runner's: parse on the link's thread, then offer on the runner's."""
        message = parse_ota_message(payload)
        if isinstance(message, OtaRequest):
            self._runner.submit(lambda: self.gateway.offer(message))
        elif isinstance(message, OtaDeleted):
            self._runner.submit(lambda: self.gateway.handle_deleted(message))

    @property
    def running(self) -> str | None:
        return self.runtime.running_version


class Fleet:
    """N gateways, their links on one asyncio loop (its own thread). No ``stop``: the
    variant's process ends instead (fleet_variant.py)."""

    def __init__(self, gateways: list[SimulatedGateway]) -> None:
        self.gateways = gateways
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()
        for gateway in self.gateways:
            gateway.link.start(loop=self.loop)

    def connected(self) -> int:
        return sum(g.link.connected for g in self.gateways)

    def running(self, version: str) -> int:
        return sum(g.running == version for g in self.gateways)
