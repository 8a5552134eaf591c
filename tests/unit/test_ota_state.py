"""The order in which OTA states may be reported to ThingsBoard."""

from __future__ import annotations

import pytest

from teg_ota.domain.model.errors import IllegalTransition
from teg_ota.domain.model.journal import JournalPhase, UpdateJournal
from teg_ota.domain.model.ota_state import OtaProgress, OtaState, allowed_next

S = OtaState
NON_TERMINAL_PATH = (S.DOWNLOADING, S.DOWNLOADED, S.VERIFIED, S.UPDATING)


def _progress_through(*states: OtaState) -> OtaProgress:
    progress = OtaProgress()
    for state in states:
        progress.advance(state)
    return progress


def test_states_are_the_words_the_stock_dashboard_knows() -> None:
    assert [str(state) for state in OtaState] == [
        "DOWNLOADING",
        "DOWNLOADED",
        "VERIFIED",
        "UPDATING",
        "UPDATED",
        "FAILED",
    ]


@pytest.mark.parametrize(
    ("state", "terminal"),
    [(state, state in (S.UPDATED, S.FAILED)) for state in OtaState],
    ids=[state.value for state in OtaState],
)
def test_is_terminal(state: OtaState, terminal: bool) -> None:
    assert state.is_terminal is terminal


def test_fresh_progress_has_reported_nothing() -> None:
    progress = OtaProgress()

    assert progress.last is None
    assert progress.history == ()
    assert not progress.finished


# --------------------------------------------------------------------------- legal paths


@pytest.mark.parametrize(
    "path",
    [
        pytest.param((*NON_TERMINAL_PATH, S.UPDATED), id="full-update"),
        pytest.param((S.UPDATED,), id="already-running"),
        pytest.param((S.FAILED,), id="refused-before-any-work"),
        *(
            pytest.param((*NON_TERMINAL_PATH[:n], S.FAILED), id=f"failed-after-{n}-steps")
            for n in range(1, len(NON_TERMINAL_PATH) + 1)
        ),
    ],
)
def test_legal_path(path: tuple[OtaState, ...]) -> None:
    progress = _progress_through(*path)

    assert progress.history == path
    assert progress.last is path[-1]
    assert progress.finished


def test_progress_is_unfinished_until_a_terminal_state() -> None:
    progress = OtaProgress()
    for state in NON_TERMINAL_PATH:
        progress.advance(state)
        assert not progress.finished
    progress.advance(S.UPDATED)
    assert progress.finished


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        pytest.param(None, {S.DOWNLOADING, S.UPDATED, S.FAILED}, id="nothing-yet"),
        pytest.param(S.DOWNLOADING, {S.DOWNLOADED, S.FAILED}, id="DOWNLOADING"),
        pytest.param(S.DOWNLOADED, {S.VERIFIED, S.FAILED}, id="DOWNLOADED"),
        pytest.param(S.VERIFIED, {S.UPDATING, S.FAILED}, id="VERIFIED"),
        pytest.param(S.UPDATING, {S.UPDATED, S.FAILED}, id="UPDATING"),
        pytest.param(S.UPDATED, set(), id="UPDATED"),
        pytest.param(S.FAILED, set(), id="FAILED"),
    ],
)
def test_allowed_next(current: OtaState | None, expected: set[OtaState]) -> None:
    assert allowed_next(current) == expected


# --------------------------------------------------------------------------- illegal


@pytest.mark.parametrize(
    ("done", "illegal"),
    [
        pytest.param((), S.DOWNLOADED, id="skip-DOWNLOADING"),
        pytest.param((), S.VERIFIED, id="start-at-VERIFIED"),
        pytest.param((), S.UPDATING, id="start-at-UPDATING"),
        pytest.param((S.DOWNLOADING,), S.VERIFIED, id="skip-DOWNLOADED"),
        pytest.param((S.DOWNLOADING,), S.UPDATED, id="DOWNLOADING-to-UPDATED"),
        pytest.param((S.DOWNLOADING, S.DOWNLOADED), S.UPDATING, id="skip-VERIFIED"),
        pytest.param(NON_TERMINAL_PATH[:3], S.UPDATED, id="skip-UPDATING"),
        pytest.param((S.DOWNLOADING,), S.DOWNLOADING, id="repeat-DOWNLOADING"),
        pytest.param((S.DOWNLOADING, S.DOWNLOADED), S.DOWNLOADING, id="back-to-DOWNLOADING"),
        pytest.param(NON_TERMINAL_PATH, S.VERIFIED, id="back-to-VERIFIED"),
        *(
            pytest.param((*NON_TERMINAL_PATH, S.UPDATED), state, id=f"UPDATED-then-{state}")
            for state in OtaState
        ),
        *(pytest.param((S.UPDATED,), state, id=f"confirmed-then-{state}") for state in OtaState),
        *(pytest.param((S.FAILED,), state, id=f"FAILED-then-{state}") for state in OtaState),
        *(
            pytest.param((S.DOWNLOADING, S.FAILED), state, id=f"late-FAILED-then-{state}")
            for state in OtaState
        ),
    ],
)
def test_illegal_transition_is_refused_and_changes_nothing(
    done: tuple[OtaState, ...], illegal: OtaState
) -> None:
    progress = _progress_through(*done)

    with pytest.raises(IllegalTransition, match=f"cannot report {illegal}"):
        progress.advance(illegal)

    assert progress.history == done
    assert progress.last is (done[-1] if done else None)


def test_terminal_state_is_reported_exactly_once() -> None:
    progress = _progress_through(S.UPDATED)

    with pytest.raises(IllegalTransition):
        progress.advance(S.UPDATED)
    with pytest.raises(IllegalTransition):
        progress.advance(S.FAILED)
    assert progress.history.count(S.UPDATED) == 1


def test_illegal_transition_message_names_both_states() -> None:
    with pytest.raises(IllegalTransition) as caught:
        _progress_through(S.DOWNLOADING).advance(S.UPDATING)

    assert str(caught.value) == "cannot report UPDATING after DOWNLOADING"


def test_illegal_first_state_message_says_nothing_was_reported() -> None:
    with pytest.raises(IllegalTransition, match="after nothing"):
        OtaProgress().advance(S.VERIFIED)


# --------------------------------------------------------------------------- resume


@pytest.mark.parametrize(
    ("last", "legal_next"),
    [
        pytest.param(None, S.DOWNLOADING, id="nothing-reported"),
        pytest.param(S.DOWNLOADING, S.DOWNLOADED, id="DOWNLOADING"),
        pytest.param(S.VERIFIED, S.UPDATING, id="VERIFIED"),
        pytest.param(S.UPDATING, S.UPDATED, id="UPDATING-then-UPDATED"),
        pytest.param(S.UPDATING, S.FAILED, id="UPDATING-then-FAILED"),
    ],
)
def test_resume_continues_from_the_last_reported_state(
    last: OtaState | None, legal_next: OtaState
) -> None:
    progress = OtaProgress.resume(last)

    assert progress.last is last
    assert not progress.history
    progress.advance(legal_next)
    assert progress.history == (legal_next,)


@pytest.mark.parametrize("terminal", [S.UPDATED, S.FAILED])
def test_resume_after_terminal_refuses_a_second_terminal_state(terminal: OtaState) -> None:
    progress = OtaProgress.resume(terminal)

    assert progress.finished
    for state in OtaState:
        with pytest.raises(IllegalTransition):
            progress.advance(state)


def test_resume_refuses_going_back_to_an_earlier_state() -> None:
    progress = OtaProgress.resume(S.UPDATING)

    with pytest.raises(IllegalTransition):
        progress.advance(S.DOWNLOADING)


def test_resume_from_a_journal_read_back_after_a_crash() -> None:
    written = UpdateJournal(
        target="v2",
        previous="v1",
        phase=JournalPhase.SWAPPING,
        started_at=1_700_000_000.0,
        reported=S.UPDATING,
    )
    journal = UpdateJournal.from_dict(written.to_dict())

    progress = OtaProgress.resume(journal.reported)

    with pytest.raises(IllegalTransition):
        progress.advance(S.DOWNLOADING)
    progress.advance(S.FAILED)
    assert progress.finished
