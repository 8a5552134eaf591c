"""TelemetrySink port: what the device tells ThingsBoard."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from teg_ota.domain.ota_state import OtaState


class TelemetryError(Exception):
    """Telemetry could not even be queued (e.g. the outbox is not writable)."""


@dataclass(frozen=True, slots=True)
class OtaReport:
    """One OTA state report; ``current_*`` say what runs now (sent with terminal states)."""

    state: OtaState
    error: str | None = None
    current_title: str | None = None
    current_version: str | None = None

    def values(self) -> dict[str, object]:
        values: dict[str, object] = {"sw_state": self.state.value}
        if self.error is not None:
            values["sw_error"] = self.error
        if self.current_title is not None:
            values["current_sw_title"] = self.current_title
        if self.current_version is not None:
            values["current_sw_version"] = self.current_version
        return values


class TelemetrySink(Protocol):
    def publish_ota_state(self, report: OtaReport) -> None:
        """Queue an OTA state; delivered in order, never lost while offline."""
        ...

    def publish_telemetry(self, values: Mapping[str, object]) -> None: ...

    def request_ota_attributes(self) -> None:
        """Ask ThingsBoard for the OTA shared attributes; the answer comes back as an
        attribute message (the server does not re-send them after a reconnect)."""
        ...
