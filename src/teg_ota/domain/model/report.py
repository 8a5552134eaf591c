"""One OTA state report, as the telemetry sink publishes it."""

from __future__ import annotations

from dataclasses import dataclass

from teg_ota.domain.model.ota_state import OtaState


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
