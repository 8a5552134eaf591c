"""Resuming after a crash or a power cut: one function over the journal and what the engine
shows, one case per row of docs/architecture.md's recovery table.

The answer is a :class:`~teg_ota.domain.core.phases.Step`: the same currency as the phase
table, so a resumed update continues through the same loop (a rollback resumed after a
power cut is the rollback the table describes, not a second implementation of it).
"""

from __future__ import annotations

import enum

from teg_ota.domain.core.phases import (
    ClearJournal,
    Effect,
    NoteInterruption,
    Phase,
    Report,
    Step,
    Stop,
    WriteJournal,
)
from teg_ota.domain.model.controller import ControllerState
from teg_ota.domain.model.errors import InvalidVersion
from teg_ota.domain.model.journal import InterruptedAttempts, JournalPhase, UpdateJournal
from teg_ota.domain.model.ota_state import OtaState
from teg_ota.domain.model.outcome import Outcome
from teg_ota.domain.model.versions import parse_version

INTERRUPTED_PREPARING = "interrupted while preparing (gateway restarted)"
INTERRUPTED_SWAP = "interrupted during the swap (gateway restarted)"
INTERRUPTED_ROLLBACK = "interrupted while rolling back (gateway restarted)"
NOT_RUNNING_AFTER_RESTART = "the new controller was not running after a restart"
UNRECORDED_ROLLBACK = (
    "rolled back after its health gate: the gateway could not record its success (nor the "
    "rollback: its disk was full or read-only)"
)


def interrupted_too_often(count: int) -> str:
    """Why a version interrupted ``count`` times in a row is failed (the loop guard)."""
    return f"interrupted {count} times during its swap: possible reboot loop"


class Row(enum.StrEnum):
    """The rows of the recovery table, in its order (docs/architecture.md prints the same)."""

    ALREADY_ENDED = "already ended"
    UNREADABLE_TARGET = "unreadable target"
    PREPARING_RUNNING = "PREPARING, a controller runs"
    PREPARING_DOWN = "PREPARING, nothing runs"
    INTERRUPTED_TOO_OFTEN = "SWAPPING or HEALTH_CHECK, interrupted N times in a row"
    SWAPPING = "SWAPPING"
    HEALTH_CHECK_RUNNING = "HEALTH_CHECK, the new controller runs"
    HEALTH_CHECK_DOWN = "HEALTH_CHECK, it does not run"
    ROLLING_BACK = "ROLLING_BACK"
    COMMITTING_PREVIOUS_THERE = "COMMITTING, the previous version is there"
    COMMITTING = "COMMITTING"


ROWS = tuple(Row)


_INTERRUPTIBLE = frozenset({Row.SWAPPING, Row.HEALTH_CHECK_RUNNING, Row.HEALTH_CHECK_DOWN})
"""The rows that are an interruption of the target's swap or health gate: each recovery
in one of them counts one (the loop guard)."""


def _roll_back(cause: str, *, at_fault: bool, before: tuple[Effect, ...] = ()) -> Step:
    return Step(
        (
            *before,
            WriteJournal(JournalPhase.ROLLING_BACK, error=cause, version_at_fault=at_fault),
        ),
        next=Phase.ROLLING_BACK,
    )


def previous_interruptions(record: InterruptedAttempts | None, target: str) -> int:
    """How many times in a row ``target``'s swap or health gate was interrupted so far: a
    count kept for another version does not carry over (it starts again)."""
    return record.count if record is not None and record.version == target else 0


def row(
    journal: UpdateJournal,
    engine: ControllerState,
    *,
    interrupted: int = 0,
    limit: int | None = None,
) -> Row:
    """Which row of the recovery table applies (the table's first column). ``interrupted``:
    the target's interruptions in a row before this one; ``limit``:
    ``TEG_MAX_INTERRUPTED_ATTEMPTS`` (``None``: no loop guard)."""
    found = _row(journal, engine)
    if found in _INTERRUPTIBLE and limit is not None and interrupted + 1 >= limit:
        return Row.INTERRUPTED_TOO_OFTEN
    return found


def _row(journal: UpdateJournal, engine: ControllerState) -> Row:
    running = engine.running
    if journal.reported is not None and journal.reported.is_terminal:
        return Row.ALREADY_ENDED
    try:
        parse_version(journal.target)
    except InvalidVersion:
        return Row.UNREADABLE_TARGET
    match journal.phase:
        case JournalPhase.PREPARING:
            return Row.PREPARING_RUNNING if running else Row.PREPARING_DOWN
        case JournalPhase.SWAPPING:
            return Row.SWAPPING
        case JournalPhase.HEALTH_CHECK if running and engine.version == journal.target:
            return Row.HEALTH_CHECK_RUNNING
        case JournalPhase.HEALTH_CHECK:
            return Row.HEALTH_CHECK_DOWN
        case JournalPhase.ROLLING_BACK:
            return Row.ROLLING_BACK
        case JournalPhase.COMMITTING if (
            engine.exists
            and journal.previous not in (None, journal.target)
            and engine.version == journal.previous
        ):
            return Row.COMMITTING_PREVIOUS_THERE
        case JournalPhase.COMMITTING:
            return Row.COMMITTING


def resume(
    journal: UpdateJournal, engine: ControllerState, *, interrupted: int, limit: int
) -> Step:
    """What to do with an interrupted update, given what the engine shows now.
    ``interrupted``: how many times in a row the target's swap or health gate was
    interrupted before (:func:`previous_interruptions`); ``limit``:
    ``TEG_MAX_INTERRUPTED_ATTEMPTS``."""
    count = interrupted + 1
    noted = (NoteInterruption(count),)
    match row(journal, engine, interrupted=interrupted, limit=limit):
        case Row.ALREADY_ENDED:
            # Its terminal state is out; only the clean-up was interrupted.
            return Step((ClearJournal(),), stop=Stop(Outcome.NOTHING_TO_RECOVER))
        case Row.UNREADABLE_TARGET:
            return Step(
                (ClearJournal(),),
                stop=Stop(Outcome.NOTHING_TO_RECOVER, error="journal named no valid version"),
            )
        case Row.PREPARING_RUNNING:
            # Never touched: leave it as it is. Not remembered: the version is not to blame,
            # and the assignment ThingsBoard re-sends after the reconnect retries it.
            error = (
                f"update to {journal.target} was {INTERRUPTED_PREPARING}; "
                f"{engine.version} kept running"
            )
            return Step(
                (Report(OtaState.FAILED, error, current=engine.version or ""), ClearJournal()),
                stop=Stop(Outcome.FAILED, engine.version, error),
            )
        case Row.PREPARING_DOWN:
            # A power cut stopped the old controller: start it again.
            return _roll_back(INTERRUPTED_PREPARING, at_fault=False)
        case Row.INTERRUPTED_TOO_OFTEN:
            # The loop guard: a version that reboots the gateway in its swap or its gate
            # would otherwise be retried for ever. Remembered (at fault), so the re-sent
            # assignment does not retry it; the count is forgotten once the rollback is
            # journalled (a forced retry, or another version, starts afresh).
            return Step(
                (
                    WriteJournal(
                        JournalPhase.ROLLING_BACK,
                        error=interrupted_too_often(count),
                        version_at_fault=True,
                    ),
                    NoteInterruption(0),
                ),
                next=Phase.ROLLING_BACK,
            )
        case Row.SWAPPING:
            # Nothing was observed against the version: roll back, retry when re-sent. The
            # count is stored first: a kill right after it counts twice, never not at all.
            return _roll_back(INTERRUPTED_SWAP, at_fault=False, before=noted)
        case Row.HEALTH_CHECK_RUNNING:
            # It keeps its chance: the rest of the grace period is waited out.
            return Step(noted, next=Phase.HEALTH_CHECK)
        case Row.HEALTH_CHECK_DOWN:
            # A reboot or an engine restart stops containers: that says nothing against it.
            return _roll_back(NOT_RUNNING_AFTER_RESTART, at_fault=False, before=noted)
        case Row.ROLLING_BACK:
            return _roll_back(
                journal.error or INTERRUPTED_ROLLBACK, at_fault=journal.version_at_fault
            )
        case Row.COMMITTING_PREVIOUS_THERE:
            # Only a rollback puts the previous version back after the gate: the success
            # could not be recorded, nor the rollback. FAILED is what was said: finish it.
            return _roll_back(UNRECORDED_ROLLBACK, at_fault=False)
        case Row.COMMITTING:
            # The gate had passed and UPDATED may be out: finish, never roll back.
            return Step((), next=Phase.COMMITTING)
    raise AssertionError("unreachable: row() names every case")  # pragma: no cover


def remaining_grace_s(grace_s: float, started_at_ms: int | None, now_ms: float) -> float:
    """What is left of the health grace for a controller that started at ``started_at_ms``
    (unknown: the whole grace). Never negative, never more than the grace."""
    if started_at_ms is None:
        return grace_s
    up_s = max(now_ms - started_at_ms, 0.0) / 1000
    return min(max(grace_s - up_s, 0.0), grace_s)
