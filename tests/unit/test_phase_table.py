"""The phase table, row by row: the exact next phase, effects and report for every
(phase, kind of result), written out by hand from docs/architecture.md, and a check that
the docs print the same table the code runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from teg_ota.domain.core import phases
from teg_ota.domain.core.failures import Blame
from teg_ota.domain.core.phases import (
    TRANSITIONS,
    ClearJournal,
    CollectImages,
    Done,
    EngineLost,
    Facts,
    Failed,
    Held,
    Kind,
    Phase,
    RecordSuccess,
    RememberFailure,
    Report,
    Step,
    Stop,
    WriteJournal,
)
from teg_ota.domain.core.recovery import ROWS as RECOVERY_ROWS
from teg_ota.domain.model.journal import JournalPhase, UpdateJournal
from teg_ota.domain.model.ota_state import OtaState
from teg_ota.domain.model.outcome import Outcome

DOCS = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"
C2 = "2" * 40

PREPARING = Facts(UpdateJournal("v1.1", "v1.0", JournalPhase.PREPARING, 0.0), old_running=True)
SWAPPED = Facts(UpdateJournal("v1.1", "v1.0", JournalPhase.SWAPPING, 0.0, commit=C2), True)
BACK = Facts(
    UpdateJournal("v1.1", "v1.0", JournalPhase.ROLLING_BACK, 0.0, error="exited", commit=C2),
    True,
)
BACK_INTERRUPTED = Facts(
    UpdateJournal(
        "v1.1", "v1.0", JournalPhase.ROLLING_BACK, 0.0, error="power cut", version_at_fault=False
    )
)

BEFORE = "update to v1.1 failed: {}; v1.0 kept running"
ROLLED = "update from v1.0 to v1.1 failed: exited; rolled back to v1.0"
NOTHING = "update to v1.1 failed: exited; no previous version could be started"


def _failed_before(error: str, *, remember: bool) -> Step:
    message = BEFORE.format(error)
    effects = (
        *((RememberFailure(message),) if remember else ()),
        Report(OtaState.FAILED, message, current="v1.0"),
        ClearJournal(),
    )
    return Step(effects, stop=Stop(Outcome.FAILED, "v1.0", message))


def _roll_back(error: str, at_fault: bool) -> Step:
    journal = WriteJournal(JournalPhase.ROLLING_BACK, error=error, version_at_fault=at_fault)
    return Step((journal,), next=Phase.ROLLING_BACK)


KEPT = Step((), stop=Stop(Outcome.FAILED, None, "engine gone"))
COMMIT = Step(
    (RecordSuccess(), Report(OtaState.UPDATED, current="v1.1"), ClearJournal(), CollectImages()),
    stop=Stop(Outcome.UPDATED, "v1.1"),
)
ROLLED_BACK = Step(
    (RememberFailure(ROLLED), Report(OtaState.FAILED, ROLLED, current="v1.0"), ClearJournal()),
    stop=Stop(Outcome.ROLLED_BACK, "v1.0", ROLLED),
)

ROWS: list[tuple[Phase, phases.Result, Facts, Step]] = [
    (Phase.PREPARING, Done(digest=C2), PREPARING,
     Step((Report(OtaState.DOWNLOADED),), next=Phase.VERIFYING)),
    (Phase.PREPARING, Failed("bad Dockerfile", Blame.VERSION), PREPARING,
     _failed_before("bad Dockerfile", remember=True)),
    (Phase.PREPARING, Failed("disk full", Blame.GATEWAY), PREPARING,
     _failed_before("disk full", remember=False)),
    (Phase.PREPARING, Failed("remote down", Blame.NOBODY), PREPARING,
     _failed_before("remote down", remember=False)),
    (Phase.PREPARING, EngineLost("engine gone"), PREPARING,
     _failed_before("engine gone", remember=False)),
    (Phase.PREPARING, Held(), PREPARING,
     Step((), stop=Stop(Outcome.FAILED, "v1.0", Held().reason))),
    (Phase.VERIFYING, Done(digest=C2), PREPARING,
     Step((Report(OtaState.VERIFIED),), next=Phase.WAITING)),
    (Phase.VERIFYING, Failed("wrong commit", Blame.VERSION), PREPARING,
     _failed_before("wrong commit", remember=True)),
    (Phase.VERIFYING, Failed("cannot write", Blame.GATEWAY), PREPARING,
     _failed_before("cannot write", remember=False)),
    (Phase.VERIFYING, Failed("remote down", Blame.NOBODY), PREPARING,
     _failed_before("remote down", remember=False)),
    (Phase.VERIFYING, EngineLost("engine gone"), PREPARING,
     _failed_before("engine gone", remember=False)),
    (Phase.VERIFYING, Held(), PREPARING,
     Step((Report(OtaState.VERIFIED),), stop=Stop(Outcome.FAILED, "v1.0", Held().reason))),
    (Phase.WAITING, Done(digest=C2), PREPARING,
     Step((WriteJournal(JournalPhase.SWAPPING, required=True, commit=C2),
           Report(OtaState.UPDATING)), next=Phase.SWAPPING)),
    # A wait never blames the version (a lock held too long, a newer assignment).
    (Phase.WAITING, Failed("odd", Blame.VERSION), PREPARING,
     _failed_before("odd", remember=False)),
    (Phase.WAITING, Failed("cannot write", Blame.GATEWAY), PREPARING,
     _failed_before("cannot write", remember=False)),
    (Phase.WAITING, Failed("lock held for 600 s", Blame.NOBODY), PREPARING,
     _failed_before("lock held for 600 s", remember=False)),
    (Phase.WAITING, EngineLost("engine gone"), PREPARING,
     _failed_before("engine gone", remember=False)),
    (Phase.WAITING, Held(), PREPARING,
     Step((), stop=Stop(Outcome.FAILED, "v1.0", Held().reason))),
    # (a newer request replaced it: the journal goes, nothing is left to resume)
    (Phase.SWAPPING, Done(started_at_ms=5), SWAPPED,
     Step((WriteJournal(JournalPhase.HEALTH_CHECK, required=True, new_started_at_ms=5),),
          next=Phase.HEALTH_CHECK)),
    (Phase.SWAPPING, Failed("no /dev/i2c-1", Blame.VERSION), SWAPPED,
     _roll_back("no /dev/i2c-1", True)),
    (Phase.SWAPPING, Failed("cannot write", Blame.GATEWAY), SWAPPED,
     _roll_back("cannot write", False)),
    (Phase.SWAPPING, Failed("power cut", Blame.NOBODY), SWAPPED, _roll_back("power cut", False)),
    (Phase.SWAPPING, EngineLost("engine gone"), SWAPPED, KEPT),
    (Phase.SWAPPING, Held(), SWAPPED,
     Step((WriteJournal(JournalPhase.HEALTH_CHECK, required=True),), next=Phase.HEALTH_CHECK)),
    (Phase.HEALTH_CHECK, Done(), SWAPPED,
     Step((WriteJournal(JournalPhase.COMMITTING, required=True),), next=Phase.COMMITTING)),
    (Phase.HEALTH_CHECK, Failed("exited", Blame.VERSION), SWAPPED, _roll_back("exited", True)),
    (Phase.HEALTH_CHECK, Failed("cannot write", Blame.GATEWAY), SWAPPED,
     _roll_back("cannot write", False)),
    (Phase.HEALTH_CHECK, Failed("restart", Blame.NOBODY), SWAPPED, _roll_back("restart", False)),
    (Phase.HEALTH_CHECK, EngineLost("engine gone"), SWAPPED, KEPT),
    (Phase.HEALTH_CHECK, Held(), SWAPPED,
     Step((WriteJournal(JournalPhase.COMMITTING, required=True),), next=Phase.COMMITTING)),
    *[(Phase.COMMITTING, result, SWAPPED, COMMIT) for result in (
        Done(), Failed("x", Blame.VERSION),
        Failed("x", Blame.NOBODY), EngineLost("engine gone"), Held())],
    # the gateway could not record the success: it does not claim the version
    (Phase.COMMITTING, Failed("cannot write", Blame.GATEWAY), SWAPPED,
     _roll_back("cannot write", False)),
    (Phase.ROLLING_BACK, Done(running="v1.0"), BACK, ROLLED_BACK),
    (Phase.ROLLING_BACK, Failed("x", Blame.VERSION), BACK,
     Step((RememberFailure(NOTHING), Report(OtaState.FAILED, NOTHING, current=""),
           ClearJournal()), stop=Stop(Outcome.FAILED, None, NOTHING))),
    (Phase.ROLLING_BACK, Failed("x", Blame.GATEWAY), BACK,
     Step((RememberFailure(NOTHING), Report(OtaState.FAILED, NOTHING, current=""),
           ClearJournal()), stop=Stop(Outcome.FAILED, None, NOTHING))),
    (Phase.ROLLING_BACK, Failed("x", Blame.NOBODY), BACK_INTERRUPTED,
     Step((Report(OtaState.FAILED, NOTHING.replace("exited", "power cut"), current=""),
           ClearJournal()),
          stop=Stop(Outcome.FAILED, None, NOTHING.replace("exited", "power cut")))),
    (Phase.ROLLING_BACK, EngineLost("engine gone"), BACK, KEPT),
    (Phase.ROLLING_BACK, Held(), BACK, Step((), stop=Stop(Outcome.FAILED, None, Held().reason))),
]


@pytest.mark.parametrize(
    ("phase", "result", "facts", "expected"),
    ROWS,
    ids=[f"{phase.value}-{phases.kind_of(result).value}" for phase, result, _, _ in ROWS],
)
def test_each_row_gives_the_exact_next_phase_effects_and_report(
    phase: Phase, result: phases.Result, facts: Facts, expected: Step
) -> None:
    assert phases.after(phase, result, facts) == expected


def test_the_rows_above_cover_the_whole_table() -> None:
    covered = {(phase, phases.kind_of(result)) for phase, result, _, _ in ROWS}
    assert covered == set(TRANSITIONS) == {(phase, kind) for phase in Phase for kind in Kind}


def test_an_update_starts_by_journalling_before_it_reports() -> None:
    assert phases.start() == Step(
        (WriteJournal(JournalPhase.PREPARING, required=True), Report(OtaState.DOWNLOADING)),
        next=Phase.PREPARING,
    )


def test_an_interrupted_rollback_is_not_remembered_against_the_version() -> None:
    step = phases.after(Phase.ROLLING_BACK, Done(running="v1.0"), BACK_INTERRUPTED)
    assert not any(isinstance(effect, RememberFailure) for effect in step.effects)


def _docs_table(marker: str) -> list[list[str]]:
    text = DOCS.read_text()
    match = re.search(rf"<!-- {marker} -->\n(.*?)\n<!-- /{marker} -->", text, re.S)
    assert match, f"docs/architecture.md has no {marker} block"
    lines = [line for line in match.group(1).splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def test_the_docs_print_the_table_the_code_runs() -> None:
    code = [
        [phase.value, kind.value, target, ", ".join(effects) or "-"]
        for (phase, kind), (target, effects) in TRANSITIONS.items()
    ]
    assert _docs_table("phase-table") == code


def test_the_docs_recovery_table_has_the_code_rows_in_order() -> None:
    assert [row[0] for row in _docs_table("recovery-table")] == list(RECOVERY_ROWS)


def test_a_wait_replaced_by_a_newer_request_leaves_no_journal() -> None:
    step = phases.after(Phase.WAITING, Held("replaced", replaced=True), PREPARING)
    assert step.effects == (ClearJournal(),)
    assert step.stop == Stop(Outcome.FAILED, "v1.0", "replaced")
