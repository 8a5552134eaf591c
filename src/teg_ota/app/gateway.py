"""The library facade: one object an embedding product (or the runner) drives.

Products that own their MQTT connection hand attribute payloads to
:meth:`Gateway.handle_attributes` and call :meth:`Gateway.watchdog_tick` from their main
loop; everything else (Docker, Git, the version store) stays inside.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from loguru import logger

from teg_ota.domain.model.outcome import Outcome, UpdateResult
from teg_ota.domain.services.update_service import UpdateService
from teg_ota.domain.services.watchdog import Watchdog
from teg_ota.ports.container_runtime import (
    ContainerRuntime,
    ContainerRuntimeError,
    ControllerState,
)
from teg_ota.ports.version_store import VersionStore


@dataclass(frozen=True, slots=True)
class GatewayStatus:
    running: bool
    version: str | None
    image: str | None
    started_at_ms: int | None
    health: str | None
    exit_code: int | None
    last_launched: str | None
    known_good: str | None
    failed: str | None
    failed_error: str | None
    update: dict[str, object] | None
    """The journal of an update in flight (or left by a crash), else ``None``."""
    engine_error: str | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class Gateway:
    def __init__(
        self,
        service: UpdateService,
        watchdog: Watchdog,
        runtime: ContainerRuntime,
        store: VersionStore,
    ) -> None:
        self.service = service
        self.watchdog = watchdog
        self._runtime = runtime
        self._store = store

    def handle_attributes(self, payload: object) -> bool:
        """The seed's ``on_msg_check_for_ota_update``: acts on an OTA attribute payload
        (synchronously) and returns whether it was an OTA notification."""
        return self.service.handle_attributes(payload)

    def watchdog_tick(self) -> bool:
        """The seed's ``restart_controller_if_needed``."""
        return self.watchdog.restart_controller_if_needed()

    def update(
        self,
        version: str,
        *,
        force: bool = False,
        on_progress: Callable[[str], None] | None = None,
    ) -> UpdateResult:
        return self.service.start_controller(version, force=force, on_progress=on_progress)

    def rollback(self) -> UpdateResult:
        return self.service.rollback()

    def recover(self) -> UpdateResult:
        return self.service.recover()

    def ensure_running(self) -> UpdateResult:
        """Start-up: run the last launched version (else the default) if nothing runs.
        When no version is known at all, the watchdog asks ThingsBoard and reports FAILED."""
        try:
            state = self._runtime.controller_state()
        except ContainerRuntimeError as exc:
            # Not fatal (dockerd may still be starting): the watchdog starts the controller
            # as soon as the engine answers.
            logger.warning("container engine not available at start-up: {}", exc)
            return UpdateResult(Outcome.FAILED, error=str(exc))
        if state.running:
            return UpdateResult(Outcome.ALREADY_RUNNING, state.version, state.version)
        version = self._store.last_launched()
        if version is None:
            self.watchdog_tick()
            return UpdateResult(Outcome.FAILED, error="no controller version known")
        return self.service.launch(version)

    def status(self) -> GatewayStatus:
        engine_error = None
        try:
            state = self._runtime.controller_state()
        except ContainerRuntimeError as exc:
            state, engine_error = ControllerState(exists=False), str(exc)
        failed = self._store.failed()
        journal = self._store.journal()
        return GatewayStatus(
            running=state.running,
            version=state.version if state.exists else None,
            image=state.image,
            started_at_ms=state.started_at_ms if state.running else None,
            health=state.health.value if state.running else None,
            exit_code=state.exit_code if state.exists and not state.running else None,
            last_launched=self._store.last_launched(),
            known_good=self._store.known_good(),
            failed=failed.version if failed else None,
            failed_error=failed.error if failed else None,
            update=journal.to_dict() if journal else None,
            engine_error=engine_error,
        )
