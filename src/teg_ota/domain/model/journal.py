"""The update journal: what an in-flight update was doing, written before each phase starts.

It is what makes a power cut at any moment end in a known state: ``recover()`` reads it back
and knows whether the old controller was still untouched, mid-swap, or in the health window.
It is plain data with a JSON-able dict form so any store can keep it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace

from teg_ota.domain.model.ota_state import OtaState


class JournalPhase(enum.StrEnum):
    PREPARING = "PREPARING"
    """Fetch, reset, build, verify. The old controller keeps running throughout."""
    SWAPPING = "SWAPPING"
    """The old controller is being stopped and the new one started."""
    HEALTH_CHECK = "HEALTH_CHECK"
    """The new controller runs; it must stay up for the grace period."""
    ROLLING_BACK = "ROLLING_BACK"
    """The new controller failed; the previous one is being started again."""
    COMMITTING = "COMMITTING"
    """The new controller passed its health gate; success is being recorded."""


class CorruptJournal(ValueError):
    """A stored journal could not be read back; stores treat it as a crash artefact."""


@dataclass(frozen=True, slots=True)
class UpdateJournal:
    target: str
    previous: str | None
    phase: JournalPhase
    started_at: float
    """Unix seconds when the update began (wall clock: it must survive a reboot)."""
    reported: OtaState | None = None
    """The last OTA state published for this update."""
    commit: str | None = None
    new_started_at_ms: int | None = None
    """When the new container started, for resuming the health gate after a crash."""
    error: str | None = None
    """Why the update is being rolled back (phase ROLLING_BACK)."""
    version_at_fault: bool = True
    """ROLLING_BACK: the failure was observed against the new version (it is remembered
    and not retried), rather than an interruption (it is retried)."""

    def at(self, phase: JournalPhase, **changes: object) -> UpdateJournal:
        return replace(self, phase=phase, **changes)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["phase"] = self.phase.value
        data["reported"] = self.reported.value if self.reported else None
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> UpdateJournal:
        try:
            reported = data.get("reported")
            started_ms = data.get("new_started_at_ms")
            previous = data.get("previous")
            commit = data.get("commit")
            error = data.get("error")
            at_fault = data.get("version_at_fault", True)
            target = data["target"]
            started_at = data["started_at"]
            if not isinstance(target, str) or isinstance(started_at, bool):
                raise CorruptJournal("journal lacks a target or a start time")
            if not isinstance(started_at, int | float):
                raise CorruptJournal("journal lacks a target or a start time")
            for key, value in (("previous", previous), ("commit", commit), ("error", error)):
                if value is not None and not isinstance(value, str):
                    raise CorruptJournal(f"journal field {key} is not text")
            if started_ms is not None and (
                isinstance(started_ms, bool) or not isinstance(started_ms, int)
            ):
                raise CorruptJournal("journal field new_started_at_ms is not an integer")
            return cls(
                target=target,
                previous=previous if isinstance(previous, str) else None,
                phase=JournalPhase(str(data["phase"])),
                started_at=float(started_at),
                reported=OtaState(str(reported)) if reported is not None else None,
                commit=commit if isinstance(commit, str) else None,
                new_started_at_ms=started_ms if isinstance(started_ms, int) else None,
                error=error if isinstance(error, str) else None,
                version_at_fault=at_fault if isinstance(at_fault, bool) else True,
            )
        except (KeyError, ValueError) as exc:
            raise CorruptJournal(f"unreadable journal: {exc}") from exc


@dataclass(frozen=True, slots=True)
class FailedVersion:
    """A version whose update failed; it is not retried until something else is assigned.

    ``fingerprint`` names the build and run settings it failed under: a failure remembered
    under other settings (a Dockerfile path fixed, privilege turned off) no longer counts,
    since the gateway rather than the version may have been at fault."""

    version: str
    error: str
    fingerprint: str | None = None

    def applies_under(self, fingerprint: str | None) -> bool:
        return self.fingerprint is None or fingerprint is None or self.fingerprint == fingerprint


@dataclass(frozen=True, slots=True)
class Answer:
    """The last terminal state the gateway gave ThingsBoard, and for which version: kept
    across restarts, so the assignment ThingsBoard re-sends on every reconnect is not
    answered again (a fresh UPDATED would overwrite a newer QUEUED on the dashboard)."""

    state: OtaState
    version: str
    """As assigned: a rejected assignment's version may not even be a valid one."""
    title: str | None = None
    """Set for a rejection (a title mismatch is told once per title, too)."""


@dataclass(frozen=True, slots=True)
class InterruptedAttempts:
    """How many times in a row ``version``'s swap or health gate was interrupted (a power
    cut, an engine restart, teg-ota killed), as recovery found it. Kept apart from the
    journal, which every interrupted attempt's rollback clears: at
    ``TEG_MAX_INTERRUPTED_ATTEMPTS`` the version is failed (the loop guard)."""

    version: str
    count: int

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise ValueError("an interrupted-attempts count is a whole number >= 1")

    def to_dict(self) -> dict[str, object]:
        return {"version": self.version, "count": self.count}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> InterruptedAttempts:
        """Raises ValueError when ``data`` is not such a record."""
        version, count = data.get("version"), data.get("count")
        if not isinstance(version, str):
            raise ValueError("'version' must be a string")
        if isinstance(count, bool) or not isinstance(count, int):
            raise ValueError("'count' must be a whole number")
        return cls(version, count)
