"""The update algorithm, all of it: for each phase and each kind of result, the next phase
and the effects, as data.

The shell (``domain.services.update_flow``) performs one phase, classifies what happened
as a :data:`Result`, asks :func:`after` what comes next, applies the effects in order and
repeats. Nothing here performs anything. :data:`TRANSITIONS` is the table that
docs/architecture.md prints ("The phase table"); a unit test holds the two to each other.

PREPARING, VERIFYING and WAITING are all journalled as ``PREPARING``: until the SWAPPING entry is
durable, the old controller has not been touched, and that is all recovery must know.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from teg_ota.domain.core.failures import Blame, remembered
from teg_ota.domain.model.journal import JournalPhase, UpdateJournal
from teg_ota.domain.model.ota_state import OtaState
from teg_ota.domain.model.outcome import Outcome


class Phase(enum.StrEnum):
    PREPARING = "PREPARING"
    """Resolve, stage and build or load the image; the old controller keeps running."""
    VERIFYING = "VERIFYING"
    """The image carries the digest the version resolved to."""
    WAITING = "WAITING"
    """The swap waits for the controller's update lock and the maintenance window (only
    while a controller runs; ``services.swap_gate``)."""
    SWAPPING = "SWAPPING"
    """Stop the old controller, start the new one: the only downtime."""
    HEALTH_CHECK = "HEALTH_CHECK"
    """The new controller must stay up (and healthy) for the grace period."""
    COMMITTING = "COMMITTING"
    """The gate passed: make sure it runs, then record success. Rolls back only when the
    gateway cannot record the success (its disk is full or read-only)."""
    ROLLING_BACK = "ROLLING_BACK"
    """Start the previous version again."""


# ------------------------------------------------------------------ results of a phase


@dataclass(frozen=True, slots=True)
class Done:
    digest: str | None = None
    """VERIFYING: the digest the image was verified to carry."""
    started_at_ms: int | None = None
    """SWAPPING: when the new container started."""
    running: str | None = None
    """ROLLING_BACK: the version running afterwards (``None``: none could be started)."""


@dataclass(frozen=True, slots=True)
class Failed:
    error: str
    blame: Blame


@dataclass(frozen=True, slots=True)
class EngineLost:
    """The engine went away: nothing can be known, so nothing is decided or reported."""

    error: str


@dataclass(frozen=True, slots=True)
class Held:
    """Shutdown forbids new swaps: the update stops before it touches the controller."""

    reason: str = "abandoned before the swap: teg-ota stopped"
    replaced: bool = False
    """WAITING: a newer request replaces this update (its journal goes; nothing to resume)."""


Result = Done | Failed | EngineLost | Held


class Kind(enum.StrEnum):
    """A result as the table sees it."""

    DONE = "done"
    FAILED_VERSION = "failed (version)"
    FAILED_GATEWAY = "failed (gateway)"
    FAILED_NOBODY = "failed (nobody)"
    ENGINE_LOST = "engine lost"
    HELD = "held"


def kind_of(result: Result) -> Kind:
    match result:
        case Done():
            return Kind.DONE
        case Failed(blame=Blame.VERSION):
            return Kind.FAILED_VERSION
        case Failed(blame=Blame.GATEWAY):
            return Kind.FAILED_GATEWAY
        case Failed():
            return Kind.FAILED_NOBODY
        case EngineLost():
            return Kind.ENGINE_LOST
        case Held():
            return Kind.HELD


# ------------------------------------------------------------------------- effects


@dataclass(frozen=True, slots=True)
class WriteJournal:
    phase: JournalPhase
    required: bool = False
    """If this write fails, the phase counts as failed by the gateway: before the swap the
    update fails with the old controller untouched; at or after it, it rolls back. Only
    the rollback's own entry is best effort (a rollback must go on whatever the disk)."""
    commit: str | None = None
    new_started_at_ms: int | None = None
    error: str | None = None
    version_at_fault: bool | None = None


@dataclass(frozen=True, slots=True)
class Report:
    state: OtaState
    error: str | None = None
    current: str | None = None
    """``current_sw_version`` sent with a terminal state ("" when nothing runs)."""


@dataclass(frozen=True, slots=True)
class RememberFailure:
    error: str


@dataclass(frozen=True, slots=True)
class RecordSuccess:
    """Last launched, the known-good history, and the failure memory cleared. Required:
    a version the gateway cannot record as launched would not be the one started after a
    reboot, so it is not claimed (the table rolls back)."""


@dataclass(frozen=True, slots=True)
class NoteInterruption:
    """Recovery found the target's swap or health gate interrupted: store how many times in
    a row that is now (the loop guard, ``core.recovery``). ``0`` forgets the count: the
    limit was reached and the version is remembered as failed instead. Best effort."""

    count: int


@dataclass(frozen=True, slots=True)
class ClearJournal:
    pass


@dataclass(frozen=True, slots=True)
class CollectImages:
    pass


Effect = (
    WriteJournal
    | Report
    | RememberFailure
    | RecordSuccess
    | NoteInterruption
    | ClearJournal
    | CollectImages
)


@dataclass(frozen=True, slots=True)
class Stop:
    outcome: Outcome
    running: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Step:
    effects: tuple[Effect, ...]
    next: Phase | None = None
    stop: Stop | None = None


# ------------------------------------------------------------------------ the table

E = str  # an effect as the table (and the docs) name it

TRANSITIONS: dict[tuple[Phase, Kind], tuple[str, tuple[E, ...]]] = {
    # (phase, result): (next phase or end, effects in order)
    (Phase.PREPARING, Kind.DONE): ("VERIFYING", ("report DOWNLOADED",)),
    (Phase.PREPARING, Kind.FAILED_VERSION): ("end: failed", ("remember", "report FAILED", "clear journal")),  # noqa: E501
    (Phase.PREPARING, Kind.FAILED_GATEWAY): ("end: failed", ("report FAILED", "clear journal")),
    (Phase.PREPARING, Kind.FAILED_NOBODY): ("end: failed", ("report FAILED", "clear journal")),
    (Phase.PREPARING, Kind.ENGINE_LOST): ("end: failed", ("report FAILED", "clear journal")),
    (Phase.PREPARING, Kind.HELD): ("end: failed", ()),
    (Phase.VERIFYING, Kind.DONE): ("WAITING", ("report VERIFIED",)),
    (Phase.VERIFYING, Kind.FAILED_VERSION): ("end: failed", ("remember", "report FAILED", "clear journal")),  # noqa: E501
    (Phase.VERIFYING, Kind.FAILED_GATEWAY): ("end: failed", ("report FAILED", "clear journal")),
    (Phase.VERIFYING, Kind.FAILED_NOBODY): ("end: failed", ("report FAILED", "clear journal")),
    (Phase.VERIFYING, Kind.ENGINE_LOST): ("end: failed", ("report FAILED", "clear journal")),
    (Phase.VERIFYING, Kind.HELD): ("end: failed", ("report VERIFIED",)),
    (Phase.WAITING, Kind.DONE): (
        "SWAPPING",
        ("journal SWAPPING (required)", "report UPDATING"),
    ),
    (Phase.WAITING, Kind.FAILED_VERSION): ("end: failed", ("report FAILED", "clear journal")),
    (Phase.WAITING, Kind.FAILED_GATEWAY): ("end: failed", ("report FAILED", "clear journal")),
    (Phase.WAITING, Kind.FAILED_NOBODY): ("end: failed", ("report FAILED", "clear journal")),
    (Phase.WAITING, Kind.ENGINE_LOST): ("end: failed", ("report FAILED", "clear journal")),
    (Phase.WAITING, Kind.HELD): ("end: failed", ("clear journal if replaced",)),
    (Phase.SWAPPING, Kind.DONE): ("HEALTH_CHECK", ("journal HEALTH_CHECK (required)",)),
    (Phase.SWAPPING, Kind.FAILED_VERSION): ("ROLLING_BACK", ("journal ROLLING_BACK (at fault)",)),
    (Phase.SWAPPING, Kind.FAILED_GATEWAY): ("ROLLING_BACK", ("journal ROLLING_BACK",)),
    (Phase.SWAPPING, Kind.FAILED_NOBODY): ("ROLLING_BACK", ("journal ROLLING_BACK",)),
    (Phase.SWAPPING, Kind.ENGINE_LOST): ("end: failed, journal kept", ()),
    (Phase.SWAPPING, Kind.HELD): ("HEALTH_CHECK", ("journal HEALTH_CHECK (required)",)),
    (Phase.HEALTH_CHECK, Kind.DONE): ("COMMITTING", ("journal COMMITTING (required)",)),
    (Phase.HEALTH_CHECK, Kind.FAILED_VERSION): ("ROLLING_BACK", ("journal ROLLING_BACK (at fault)",)),  # noqa: E501
    (Phase.HEALTH_CHECK, Kind.FAILED_GATEWAY): ("ROLLING_BACK", ("journal ROLLING_BACK",)),
    (Phase.HEALTH_CHECK, Kind.FAILED_NOBODY): ("ROLLING_BACK", ("journal ROLLING_BACK",)),
    (Phase.HEALTH_CHECK, Kind.ENGINE_LOST): ("end: failed, journal kept", ()),
    (Phase.HEALTH_CHECK, Kind.HELD): ("COMMITTING", ("journal COMMITTING (required)",)),
    **{
        (Phase.COMMITTING, kind): (
            "end: updated",
            ("record success (required)", "report UPDATED", "clear journal", "collect images"),
        )
        for kind in Kind
        if kind is not Kind.FAILED_GATEWAY
    },
    # Only a failed required write ends COMMITTING so (the phase itself never fails): the
    # gateway could not record the new version, so it must not claim it; back to the old.
    (Phase.COMMITTING, Kind.FAILED_GATEWAY): ("ROLLING_BACK", ("journal ROLLING_BACK",)),
    **{
        (Phase.ROLLING_BACK, kind): (
            "end: rolled back (failed if nothing runs)",
            ("remember if at fault", "report FAILED", "clear journal"),
        )
        for kind in (Kind.DONE, Kind.FAILED_VERSION, Kind.FAILED_GATEWAY, Kind.FAILED_NOBODY)
    },
    (Phase.ROLLING_BACK, Kind.ENGINE_LOST): ("end: failed, journal kept", ()),
    (Phase.ROLLING_BACK, Kind.HELD): ("end: failed, journal kept", ()),
}
"""A swap already under way is finished when shutdown holds swaps (HELD after VERIFYING
only); a rollback or an engine loss keeps the journal for recovery to finish."""


@dataclass(frozen=True, slots=True)
class Facts:
    """What the table's effects need to know of the update: its journal, and whether the
    old controller was running when it started (recovery cannot know: ``False``)."""

    journal: UpdateJournal
    old_running: bool = False

    @property
    def target(self) -> str:
        return self.journal.target

    @property
    def kept_running(self) -> str | None:
        return self.journal.previous if self.old_running else None


def start() -> Step:
    return Step(
        (WriteJournal(JournalPhase.PREPARING, required=True), Report(OtaState.DOWNLOADING)),
        next=Phase.PREPARING,
    )


def after(phase: Phase, result: Result, facts: Facts) -> Step:
    """The next step after ``phase`` ended in ``result``: built from :data:`TRANSITIONS`."""
    target, effect_names = TRANSITIONS[(phase, kind_of(result))]
    effects = tuple(
        effect
        for name in effect_names
        if (effect := _effect(name, result, facts)) is not None
    )
    if target.startswith("end"):
        return Step(effects, stop=_stop(target, result, facts))
    return Step(effects, next=Phase(target))


def _error(result: Result) -> str:
    match result:
        case Failed(error=error) | EngineLost(error=error):
            return error
        case Held(reason=reason):
            return reason
        case Done():
            return "no error"


def failure_before_swap(facts: Facts, result: Result) -> str:
    kept = facts.kept_running
    suffix = f"; {kept} kept running" if kept else ""
    return f"update to {facts.target} failed: {_error(result)}{suffix}"


def failure_after_rollback(facts: Facts, running: str | None) -> str:
    cause = facts.journal.error or "interrupted while rolling back (gateway restarted)"
    if running is not None:
        return (
            f"update from {facts.journal.previous} to {facts.target} failed: {cause}; "
            f"rolled back to {running}"
        )
    return f"update to {facts.target} failed: {cause}; no previous version could be started"


def _rolled_back_to(result: Result) -> str | None:
    return result.running if isinstance(result, Done) else None


def _effect(name: str, result: Result, facts: Facts) -> Effect | None:
    match name:
        case "report DOWNLOADED":
            return Report(OtaState.DOWNLOADED)
        case "report VERIFIED":
            return Report(OtaState.VERIFIED)
        case "report UPDATING":
            return Report(OtaState.UPDATING)
        case "report UPDATED":
            return Report(OtaState.UPDATED, current=facts.target)
        case "journal SWAPPING (required)":
            digest = result.digest if isinstance(result, Done) else None
            return WriteJournal(JournalPhase.SWAPPING, required=True, commit=digest)
        case "journal HEALTH_CHECK (required)":
            started = result.started_at_ms if isinstance(result, Done) else None
            return WriteJournal(
                JournalPhase.HEALTH_CHECK, required=True, new_started_at_ms=started
            )
        case "journal COMMITTING (required)":
            return WriteJournal(JournalPhase.COMMITTING, required=True)
        case "journal ROLLING_BACK (at fault)" | "journal ROLLING_BACK":
            at_fault = isinstance(result, Failed) and remembered(result.blame)
            return WriteJournal(
                JournalPhase.ROLLING_BACK, error=_error(result), version_at_fault=at_fault
            )
        case "remember":
            return RememberFailure(failure_before_swap(facts, result))
        case "remember if at fault":
            if not facts.journal.version_at_fault:
                return None
            return RememberFailure(failure_after_rollback(facts, _rolled_back_to(result)))
        case "report FAILED" if facts.journal.phase is JournalPhase.ROLLING_BACK:
            # After a rollback the report names both versions and what runs now.
            running = _rolled_back_to(result)
            return Report(
                OtaState.FAILED, failure_after_rollback(facts, running), current=running or ""
            )
        case "report FAILED":
            return Report(
                OtaState.FAILED, failure_before_swap(facts, result), current=facts.kept_running
            )
        case "record success (required)":
            return RecordSuccess()
        case "clear journal":
            return ClearJournal()
        case "clear journal if replaced":
            return ClearJournal() if isinstance(result, Held) and result.replaced else None
        case "collect images":
            return CollectImages()
    raise ValueError(f"the phase table names an unknown effect {name!r}")


def _stop(target: str, result: Result, facts: Facts) -> Stop:
    if target == "end: updated":
        return Stop(Outcome.UPDATED, facts.target)
    if target == "end: failed, journal kept":
        return Stop(Outcome.FAILED, None, _error(result))
    if target.startswith("end: rolled back"):
        running = _rolled_back_to(result)
        outcome = Outcome.ROLLED_BACK if running is not None else Outcome.FAILED
        return Stop(outcome, running, failure_after_rollback(facts, running))
    if isinstance(result, Held):
        return Stop(Outcome.FAILED, facts.journal.previous, result.reason)
    return Stop(Outcome.FAILED, facts.kept_running, failure_before_swap(facts, result))
