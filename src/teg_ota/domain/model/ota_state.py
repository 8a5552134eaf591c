"""The OTA states a device reports to ThingsBoard, and the order they may come in.

ThingsBoard validates nothing a device sends (any other word makes the device vanish from
the stock dashboard), and a client that reports FAILED after UPDATED leaves the dashboard
stuck, so the order is enforced here and a terminal state is reported exactly once.
"""

from __future__ import annotations

import enum

from teg_ota.domain.model.errors import IllegalTransition


class OtaState(enum.StrEnum):
    DOWNLOADING = "DOWNLOADING"
    DOWNLOADED = "DOWNLOADED"
    VERIFIED = "VERIFIED"
    UPDATING = "UPDATING"
    UPDATED = "UPDATED"
    FAILED = "FAILED"

    @property
    def is_terminal(self) -> bool:
        return self in (OtaState.UPDATED, OtaState.FAILED)


_NEXT: dict[OtaState | None, frozenset[OtaState]] = {
    # UPDATED straight away: the requested version already runs. FAILED straight away: the
    # request was refused before any work (invalid version, nothing to roll back to, ...).
    None: frozenset({OtaState.DOWNLOADING, OtaState.UPDATED, OtaState.FAILED}),
    OtaState.DOWNLOADING: frozenset({OtaState.DOWNLOADED, OtaState.FAILED}),
    OtaState.DOWNLOADED: frozenset({OtaState.VERIFIED, OtaState.FAILED}),
    OtaState.VERIFIED: frozenset({OtaState.UPDATING, OtaState.FAILED}),
    OtaState.UPDATING: frozenset({OtaState.UPDATED, OtaState.FAILED}),
    OtaState.UPDATED: frozenset(),
    OtaState.FAILED: frozenset(),
}


def allowed_next(current: OtaState | None) -> frozenset[OtaState]:
    """The states that may follow ``current`` (``None``: nothing reported yet)."""
    return _NEXT[current]


class OtaProgress:
    """The states reported for one update, so far; refuses anything out of order.

    ``resume`` starts from a phase read back from the journal after a crash, so the
    recovery's terminal state is checked against what was already reported.
    """

    def __init__(self, last: OtaState | None = None) -> None:
        self._last = last
        self._history: list[OtaState] = []

    @classmethod
    def resume(cls, last: OtaState | None) -> OtaProgress:
        return cls(last)

    @property
    def last(self) -> OtaState | None:
        return self._last

    @property
    def history(self) -> tuple[OtaState, ...]:
        return tuple(self._history)

    @property
    def finished(self) -> bool:
        return self._last is not None and self._last.is_terminal

    def advance(self, state: OtaState) -> None:
        if state not in _NEXT[self._last]:
            raise IllegalTransition(f"cannot report {state} after {self._last or 'nothing'}")
        self._last = state
        self._history.append(state)
