"""TelemetrySink port: what the device tells ThingsBoard."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from teg_ota.domain.model.errors import TelemetryError
from teg_ota.domain.model.report import OtaReport

__all__ = ["OtaReport", "TelemetryError", "TelemetrySink"]


class TelemetrySink(Protocol):
    def publish_ota_state(self, report: OtaReport) -> None:
        """Queue an OTA state; delivered in order, never lost while offline."""
        ...

    def publish_telemetry(self, values: Mapping[str, object]) -> None: ...

    def request_ota_attributes(self) -> None:
        """Ask ThingsBoard for the OTA shared attributes; the answer comes back as an
        attribute message (the server does not re-send them after a reconnect)."""
        ...
