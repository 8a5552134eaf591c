"""The recovery table, row by row: what ``core.recovery.resume`` answers for each journal
phase and what the engine shows, exactly."""

from __future__ import annotations

import pytest

from teg_ota.domain.core import recovery
from teg_ota.domain.core.phases import (
    ClearJournal,
    NoteInterruption,
    Phase,
    Report,
    Step,
    Stop,
    WriteJournal,
)
from teg_ota.domain.model.controller import ControllerState
from teg_ota.domain.model.journal import JournalPhase, UpdateJournal
from teg_ota.domain.model.ota_state import OtaState
from teg_ota.domain.model.outcome import Outcome

OLD = ControllerState(exists=True, running=True, version="v1.0")
NEW = ControllerState(exists=True, running=True, version="v1.1")
DOWN = ControllerState(exists=True, running=False, version="v1.1", exit_code=0)


def journal(phase: JournalPhase, **changes: object) -> UpdateJournal:
    return UpdateJournal("v1.1", "v1.0", phase, 0.0).at(phase, **changes)


def back(cause: str, at_fault: bool, *, counted: int | None = None) -> Step:
    noted = () if counted is None else (NoteInterruption(counted),)
    return Step(
        (*noted, WriteJournal(JournalPhase.ROLLING_BACK, error=cause, version_at_fault=at_fault)),
        next=Phase.ROLLING_BACK,
    )


LIMIT = 3
TOO_OFTEN = "SWAPPING or HEALTH_CHECK, interrupted N times in a row"
PRIOR = {TOO_OFTEN: LIMIT - 1}
"""The interruptions of the target before, per row (0 unless named)."""
LOOP = recovery.interrupted_too_often(LIMIT)


PREPARING_ERROR = (
    "update to v1.1 was interrupted while preparing (gateway restarted); v1.0 kept running"
)

CASES = [
    ("already ended", journal(JournalPhase.ROLLING_BACK, reported=OtaState.FAILED), OLD,
     Step((ClearJournal(),), stop=Stop(Outcome.NOTHING_TO_RECOVER))),
    ("unreadable target", UpdateJournal("-bad", None, JournalPhase.SWAPPING, 0.0), OLD,
     Step((ClearJournal(),),
          stop=Stop(Outcome.NOTHING_TO_RECOVER, error="journal named no valid version"))),
    ("PREPARING, a controller runs", journal(JournalPhase.PREPARING), OLD,
     Step((Report(OtaState.FAILED, PREPARING_ERROR, current="v1.0"), ClearJournal()),
          stop=Stop(Outcome.FAILED, "v1.0", PREPARING_ERROR))),
    ("PREPARING, nothing runs", journal(JournalPhase.PREPARING), DOWN,
     back(recovery.INTERRUPTED_PREPARING, False)),
    (TOO_OFTEN, journal(JournalPhase.HEALTH_CHECK), NEW,
     Step((WriteJournal(JournalPhase.ROLLING_BACK, error=LOOP, version_at_fault=True),
           NoteInterruption(0)), next=Phase.ROLLING_BACK)),
    ("SWAPPING", journal(JournalPhase.SWAPPING), NEW,
     back(recovery.INTERRUPTED_SWAP, False, counted=1)),
    ("HEALTH_CHECK, the new controller runs", journal(JournalPhase.HEALTH_CHECK), NEW,
     Step((NoteInterruption(1),), next=Phase.HEALTH_CHECK)),
    ("HEALTH_CHECK, it does not run", journal(JournalPhase.HEALTH_CHECK), DOWN,
     back(recovery.NOT_RUNNING_AFTER_RESTART, False, counted=1)),
    ("ROLLING_BACK", journal(JournalPhase.ROLLING_BACK, error="exited", version_at_fault=True),
     DOWN, back("exited", True)),
    ("COMMITTING, the previous version is there", journal(JournalPhase.COMMITTING), OLD,
     back(recovery.UNRECORDED_ROLLBACK, False)),
    ("COMMITTING", journal(JournalPhase.COMMITTING), DOWN, Step((), next=Phase.COMMITTING)),
]


@pytest.mark.parametrize(("row", "interrupted", "engine", "expected"), CASES,
                         ids=[case[0] for case in CASES])
def test_each_row_resumes_exactly_as_the_table_says(
    row: str, interrupted: UpdateJournal, engine: ControllerState, expected: Step
) -> None:
    prior = PRIOR.get(row, 0)
    assert recovery.row(interrupted, engine, interrupted=prior, limit=LIMIT) == row
    assert recovery.resume(interrupted, engine, interrupted=prior, limit=LIMIT) == expected


def test_every_row_of_the_table_has_a_case() -> None:
    assert [case[0] for case in CASES] == list(recovery.ROWS)


def test_an_interrupted_rollback_without_a_cause_says_it_was_interrupted() -> None:
    interrupted = journal(JournalPhase.ROLLING_BACK, version_at_fault=False)
    step = recovery.resume(interrupted, DOWN, interrupted=0, limit=LIMIT)
    assert step == back(recovery.INTERRUPTED_ROLLBACK, False)


def test_committing_with_the_previous_version_stopped_finishes_the_rollback() -> None:
    """A power cut after the unrecorded rollback: the previous version's container is
    there, stopped; it is the rollback's (only a rollback puts it back after the gate)."""
    stopped_old = ControllerState(exists=True, running=False, version="v1.0", exit_code=0)
    interrupted = journal(JournalPhase.COMMITTING)
    assert recovery.row(interrupted, stopped_old) == "COMMITTING, the previous version is there"
    first_install = UpdateJournal("v1.1", None, JournalPhase.COMMITTING, 0.0)
    assert recovery.row(first_install, OLD) == "COMMITTING"


def test_health_check_on_another_version_than_the_target_rolls_back() -> None:
    assert recovery.row(journal(JournalPhase.HEALTH_CHECK), OLD) == "HEALTH_CHECK, it does not run"


@pytest.mark.parametrize(
    ("started", "now", "expected"),
    [(None, 5_000, 30.0), (0, 10_000, 20.0), (0, 40_000, 0.0), (10_000, 0, 30.0)],
)
def test_remaining_grace_is_never_negative_nor_more_than_the_grace(
    started: int | None, now: float, expected: float
) -> None:
    assert recovery.remaining_grace_s(30.0, started, now) == expected
