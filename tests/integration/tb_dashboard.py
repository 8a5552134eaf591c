"""What ThingsBoard's stock "Software" dashboard shows for one device (no pytest imports).

From application/src/main/data/json/demo/dashboards/software.json: its tabs filter devices on
the LATEST ``sw_state`` time series, an exact, case-sensitive match: Waiting = QUEUED;
Updating = INITIATED, DOWNLOADING, DOWNLOADED, VERIFIED, UPDATING; Updated = UPDATED;
Failed = FAILED. Any other value (the Python SDK's ``IDLE``, a typo) or no ``sw_state`` at all
puts the device in no tab. The progress bar maps the state to a percentage. The latest value is
the one the ts rule kept (tb_timeseries.TimeSeries), not the one that arrived last.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tb_timeseries import TimeSeries

WAITING, UPDATING, UPDATED, FAILED = "Waiting", "Updating", "Updated", "Failed"
TABS = (WAITING, UPDATING, UPDATED, FAILED)
TAB_OF_STATE = {
    "QUEUED": WAITING,
    "INITIATED": UPDATING,
    "DOWNLOADING": UPDATING,
    "DOWNLOADED": UPDATING,
    "VERIFIED": UPDATING,
    "UPDATING": UPDATING,
    "UPDATED": UPDATED,
    "FAILED": FAILED,
}
PROGRESS_OF_STATE = {
    "QUEUED": 0,
    "INITIATED": 5,
    "DOWNLOADING": 10,
    "DOWNLOADED": 55,
    "VERIFIED": 60,
    "UPDATING": 70,
    "FAILED": 99,
    "UPDATED": 100,
}


def tab_of(state: Any) -> str | None:
    """The tab a device with this latest ``sw_state`` is listed in, or None."""
    return TAB_OF_STATE.get(state) if isinstance(state, str) else None


def progress_of(state: Any) -> int | None:
    """The progress bar's value for this ``sw_state``, or None."""
    return PROGRESS_OF_STATE.get(state) if isinstance(state, str) else None


@dataclass(frozen=True)
class Dashboard:
    """One row of the stock dashboard, from the latest time series values."""

    tab: str | None
    progress: int | None
    sw_state: Any
    sw_state_ts: int | None
    current_sw_title: Any
    current_sw_version: Any
    target_sw_title: Any
    target_sw_version: Any
    target_sw_ts: Any
    sw_error: Any
    """Not on the stock dashboard (the "Software history" table shows it): for tests."""

    def describe(self) -> str:
        return (
            f"tab={self.tab!r} progress={self.progress} sw_state={self.sw_state!r}"
            f"@{self.sw_state_ts} current={self.current_sw_version!r} "
            f"target={self.target_sw_version!r} sw_error={self.sw_error!r}"
        )


def dashboard_of(series: TimeSeries) -> Dashboard:
    state = series.latest("sw_state")
    value = None if state is None else state.value
    return Dashboard(
        tab=tab_of(value),
        progress=progress_of(value),
        sw_state=value,
        sw_state_ts=None if state is None else state.ts,
        current_sw_title=series.value("current_sw_title"),
        current_sw_version=series.value("current_sw_version"),
        target_sw_title=series.value("target_sw_title"),
        target_sw_version=series.value("target_sw_version"),
        target_sw_ts=series.value("target_sw_ts"),
        sw_error=series.value("sw_error"),
    )
