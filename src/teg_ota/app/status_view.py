"""What ``status`` shows: the controller as the engine sees it and what the version store
recorded, read from those two ports alone.

It needs nothing else (no update service, no watchdog, no MQTT, no Git), so ``teg-ota
status`` reads it without building the composition (issue 14); ``Gateway.status`` returns
the same, so the library and the CLI can never disagree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from teg_ota.domain.core import known_good
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


def read_status(runtime: ContainerRuntime, store: VersionStore) -> GatewayStatus:
    """An unreachable engine is part of the answer (``engine_error``), not a failure."""
    engine_error = None
    try:
        state = runtime.controller_state()
    except ContainerRuntimeError as exc:
        state, engine_error = ControllerState(exists=False), str(exc)
    failed = store.failed()
    journal = store.journal()
    return GatewayStatus(
        running=state.running,
        version=state.version if state.exists else None,
        image=state.image,
        started_at_ms=state.started_at_ms if state.running else None,
        health=state.health.value if state.running else None,
        exit_code=state.exit_code if state.exists and not state.running else None,
        last_launched=store.last_launched(),
        known_good=known_good.newest(store.known_good_history()),
        failed=failed.version if failed else None,
        failed_error=failed.error if failed else None,
        update=journal.to_dict() if journal else None,
        engine_error=engine_error,
    )
