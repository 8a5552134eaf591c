"""The controller's uptime telemetry, as the original gateway sent it.

``ms_since_controller_startup`` every ``TEG_UPTIME_TELEMETRY_S`` seconds (20 by default, 0:
off), from the container's start time (the engine's ``State.StartedAt``) and the wall clock,
only while a controller runs. The runner sends it (app/runner.py); the value is computed
here, without I/O.
"""

from __future__ import annotations

from teg_ota.ports.container_runtime import ControllerState

UPTIME_KEY = "ms_since_controller_startup"


def uptime_telemetry(state: ControllerState, now_s: float) -> dict[str, int] | None:
    """``{"ms_since_controller_startup": ms}`` for a running controller whose start time is
    known, else ``None`` (nothing is sent). Never negative: a wall clock stepped back (NTP)
    after the start reads as a fresh start."""
    if not state.running or state.started_at_ms is None:
        return None
    return {UPTIME_KEY: max(0, round(now_s * 1000) - state.started_at_ms)}
