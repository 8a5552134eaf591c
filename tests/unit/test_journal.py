"""UpdateJournal's dict form: written before each phase, read back after a crash."""

from __future__ import annotations

import json

import pytest

from teg_ota.domain.model.journal import CorruptJournal, FailedVersion, JournalPhase, UpdateJournal
from teg_ota.domain.model.ota_state import OtaState

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _full(phase: JournalPhase) -> UpdateJournal:
    return UpdateJournal(
        target="v2.0.0",
        previous="v1.0.0",
        phase=phase,
        started_at=1_700_000_000.5,
        reported=OtaState.UPDATING,
        commit=COMMIT,
        new_started_at_ms=1_700_000_123_456,
        error="controller exited with code 1",
    )


def _minimal(phase: JournalPhase) -> UpdateJournal:
    return UpdateJournal(target="v2.0.0", previous=None, phase=phase, started_at=0.0)


def _valid_dict() -> dict[str, object]:
    return _full(JournalPhase.PREPARING).to_dict()


@pytest.mark.parametrize("phase", list(JournalPhase), ids=[p.value for p in JournalPhase])
@pytest.mark.parametrize("build", [_full, _minimal], ids=["all-fields", "minimal"])
def test_round_trip_for_every_phase(phase: JournalPhase, build: object) -> None:
    journal = build(phase)  # type: ignore[operator]

    assert UpdateJournal.from_dict(journal.to_dict()) == journal


@pytest.mark.parametrize("state", [None, *OtaState], ids=["none", *(s.value for s in OtaState)])
def test_round_trip_for_every_reported_state(state: OtaState | None) -> None:
    journal = UpdateJournal("v2", "v1", JournalPhase.HEALTH_CHECK, 1.0, reported=state)

    assert UpdateJournal.from_dict(journal.to_dict()) == journal


def test_round_trip_through_json_text() -> None:
    journal = _full(JournalPhase.ROLLING_BACK)

    text = json.dumps(journal.to_dict(), allow_nan=False)

    assert UpdateJournal.from_dict(json.loads(text)) == journal


def test_to_dict_uses_plain_json_values() -> None:
    data = _full(JournalPhase.SWAPPING).to_dict()

    assert data == {
        "target": "v2.0.0",
        "previous": "v1.0.0",
        "phase": "SWAPPING",
        "started_at": 1_700_000_000.5,
        "reported": "UPDATING",
        "commit": COMMIT,
        "new_started_at_ms": 1_700_000_123_456,
        "error": "controller exited with code 1",
        "version_at_fault": True,
    }
    assert type(data["phase"]) is str
    assert type(data["reported"]) is str


def test_integer_start_time_is_read_as_float() -> None:
    data = {"target": "v2", "previous": None, "phase": "PREPARING", "started_at": 17}

    journal = UpdateJournal.from_dict(data)

    assert journal.started_at == 17.0
    assert isinstance(journal.started_at, float)


def test_optional_fields_may_be_absent() -> None:
    journal = UpdateJournal.from_dict({"target": "v2", "phase": "SWAPPING", "started_at": 1.0})

    assert journal == UpdateJournal("v2", None, JournalPhase.SWAPPING, 1.0)


def test_at_moves_to_another_phase_keeping_the_rest() -> None:
    journal = _minimal(JournalPhase.PREPARING)

    moved = journal.at(JournalPhase.ROLLING_BACK, error="boom")

    assert moved.phase is JournalPhase.ROLLING_BACK
    assert moved.error == "boom"
    assert moved.target == journal.target
    assert journal.phase is JournalPhase.PREPARING


def _without(key: str) -> dict[str, object]:
    data = _valid_dict()
    del data[key]
    return data


def _with(**changes: object) -> dict[str, object]:
    return {**_valid_dict(), **changes}


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({}, id="empty"),
        pytest.param(_without("target"), id="missing-target"),
        pytest.param(_without("phase"), id="missing-phase"),
        pytest.param(_without("started_at"), id="missing-started-at"),
        pytest.param(_with(target=None), id="target-null"),
        pytest.param(_with(target=2), id="target-int"),
        pytest.param(_with(target=["v2"]), id="target-list"),
        pytest.param(_with(phase="DONE"), id="unknown-phase"),
        pytest.param(_with(phase="preparing"), id="lower-case-phase"),
        pytest.param(_with(phase=None), id="phase-null"),
        pytest.param(_with(phase=3), id="phase-int"),
        pytest.param(_with(started_at="yesterday"), id="started-at-text"),
        pytest.param(_with(started_at=None), id="started-at-null"),
        pytest.param(_with(started_at=[1.0]), id="started-at-list"),
        pytest.param(_with(reported="IDLE"), id="reported-unknown-state"),
        pytest.param(_with(reported="QUEUED"), id="reported-server-only-state"),
        pytest.param(_with(reported=4), id="reported-int"),
    ],
)
def test_corrupt_dict_raises_corrupt_journal(data: dict[str, object]) -> None:
    with pytest.raises(CorruptJournal):
        UpdateJournal.from_dict(data)


def test_corrupt_journal_is_a_value_error_for_stores() -> None:
    assert issubclass(CorruptJournal, ValueError)


def test_failed_version_is_plain_data() -> None:
    assert FailedVersion("v2", "boom") == FailedVersion("v2", "boom")
    assert FailedVersion("v2", "boom") != FailedVersion("v3", "boom")


@pytest.mark.parametrize(
    "changes",
    [
        {"previous": 5},
        {"commit": ["x"]},
        {"error": 1},
        {"new_started_at_ms": "1"},
        {"started_at": True},
    ],
    ids=["previous-int", "commit-list", "error-int", "started-ms-text", "started-at-bool"],
)
def test_wrongly_typed_optional_fields_are_corrupt_not_silently_dropped(
    changes: dict[str, object],
) -> None:
    data = {"target": "v1.1", "previous": "v1.0", "phase": "SWAPPING", "started_at": 1.0}
    with pytest.raises(CorruptJournal):
        UpdateJournal.from_dict({**data, **changes})
