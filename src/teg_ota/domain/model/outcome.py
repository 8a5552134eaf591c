"""What an update attempt ended in, for callers (CLI exit codes, the library API, tests)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Outcome(enum.StrEnum):
    UPDATED = "updated"
    ALREADY_RUNNING = "already-running"
    FAILED = "failed"
    """Failed before the swap: the old controller was never stopped."""
    ROLLED_BACK = "rolled-back"
    """Failed at or after the swap: the previous controller runs again."""
    REFUSED = "refused"
    """The version failed before; it is not retried until something else is assigned."""
    IGNORED = "ignored"
    DEFERRED = "deferred"
    """Queued behind the update in flight (latest wins)."""
    NOTHING_TO_RECOVER = "nothing-to-recover"


@dataclass(frozen=True, slots=True)
class UpdateResult:
    outcome: Outcome
    version: str | None = None
    running_version: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome in (
            Outcome.UPDATED,
            Outcome.ALREADY_RUNNING,
            Outcome.IGNORED,
            Outcome.DEFERRED,
            Outcome.NOTHING_TO_RECOVER,
        )
