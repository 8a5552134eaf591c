"""A terminal state is told once, also across a crash: the Reporter remembers the answer
durably (after the publish), forgets it when a new update starts (DOWNLOADING), and a
store that cannot write never keeps a report from going out."""

from __future__ import annotations

import pytest

from teg_ota.domain.model.journal import Answer, JournalPhase, UpdateJournal
from teg_ota.domain.model.ota_state import OtaProgress, OtaState
from teg_ota.domain.model.outcome import Outcome
from teg_ota.domain.services.reporting import CurrentSoftware, Reporter
from teg_ota.ports import OtaReport, VersionStoreError

from .fakes import FakeClock, FakeRuntime, FakeStore, FakeTelemetry, SimulatedCrash
from .test_update_service import C2, SUCCESS, World

TITLE = "teg-controller"


class AnswerUnwritable(FakeStore):
    """``set_answered`` fails as the port allows (disk full, read-only)."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts: list[Answer | None] = []

    def set_answered(self, answer: Answer | None) -> None:
        self.attempts.append(answer)
        raise VersionStoreError("the gateway cannot write /data/answered.json: Read-only")


class AnswerUnreadable(FakeStore):
    def answered(self) -> Answer | None:
        raise VersionStoreError("the gateway cannot read /data/answered.json")


class WatchingTelemetry(FakeTelemetry):
    """Notes the stored answer as it was at each publish."""

    def __init__(self, store: FakeStore) -> None:
        super().__init__()
        self.store = store
        self.answer_at_publish: list[Answer | None] = []

    def publish_ota_state(self, report: OtaReport) -> None:
        self.answer_at_publish.append(self.store.last_answer)
        super().publish_ota_state(report)


class CrashingTelemetry(FakeTelemetry):
    """The power goes while a terminal state is being handed to the sink."""

    def publish_ota_state(self, report: OtaReport) -> None:
        if report.state.is_terminal:
            raise SimulatedCrash(report.state.value)
        super().publish_ota_state(report)


def reporter(
    store: FakeStore, telemetry: FakeTelemetry | None = None
) -> tuple[Reporter, FakeTelemetry]:
    sink = telemetry or FakeTelemetry()
    return Reporter(sink, CurrentSoftware(FakeRuntime(FakeClock()), TITLE), store), sink


def after(state: OtaState | None) -> OtaProgress:
    return OtaProgress.resume(state)


# ------------------------------------------------------------------ the Reporter alone


def test_downloading_clears_the_stored_answer() -> None:
    store = FakeStore()
    store.last_answer = Answer(OtaState.UPDATED, "v1.1")
    rep, sink = reporter(store)

    rep.report(OtaProgress(), OtaState.DOWNLOADING, subject="v1.1")

    assert store.last_answer is None
    assert sink.states == ["DOWNLOADING"]


def test_a_progress_state_other_than_downloading_keeps_the_stored_answer() -> None:
    store = FakeStore()
    store.last_answer = Answer(OtaState.UPDATED, "v1.0")
    rep, sink = reporter(store)

    rep.report(after(OtaState.DOWNLOADING), OtaState.DOWNLOADED, subject="v1.1")

    assert store.last_answer == Answer(OtaState.UPDATED, "v1.0")
    assert sink.states == ["DOWNLOADED"]


@pytest.mark.parametrize("state", [OtaState.UPDATED, OtaState.FAILED])
def test_a_terminal_state_equal_to_the_stored_answer_is_not_published_again(
    state: OtaState,
) -> None:
    store = FakeStore()
    store.last_answer = Answer(state, "v1.1")
    rep, sink = reporter(store)

    rep.report(after(OtaState.UPDATING), state, error="boom", current="v1.1", subject="v1.1")

    assert sink.reports == []
    assert store.last_answer == Answer(state, "v1.1")


def test_a_terminal_state_for_another_target_is_published_and_stored() -> None:
    store = FakeStore()
    store.last_answer = Answer(OtaState.UPDATED, "v1.0")
    rep, sink = reporter(store)

    rep.report(after(OtaState.UPDATING), OtaState.UPDATED, current="v1.1", subject="v1.1")

    assert sink.reports == [
        OtaReport(OtaState.UPDATED, None, current_title=TITLE, current_version="v1.1")
    ]
    assert store.last_answer == Answer(OtaState.UPDATED, "v1.1")


def test_another_terminal_state_for_the_same_target_is_published() -> None:
    store = FakeStore()
    store.last_answer = Answer(OtaState.FAILED, "v1.1")
    rep, sink = reporter(store)

    rep.report(after(OtaState.UPDATING), OtaState.UPDATED, current="v1.1", subject="v1.1")

    assert sink.states == ["UPDATED"]
    assert store.last_answer == Answer(OtaState.UPDATED, "v1.1")


def test_the_answer_is_stored_only_after_the_publish() -> None:
    store = FakeStore()
    store.last_answer = Answer(OtaState.UPDATED, "v1.0")
    telemetry = WatchingTelemetry(store)
    rep, _ = reporter(store, telemetry)

    rep.report(after(OtaState.UPDATING), OtaState.FAILED, error="x", current="v1.0", subject="v1.1")

    assert telemetry.answer_at_publish == [Answer(OtaState.UPDATED, "v1.0")]
    assert store.last_answer == Answer(OtaState.FAILED, "v1.1")


def test_a_crash_during_the_publish_leaves_the_answer_unstored_so_it_is_repeated() -> None:
    store = FakeStore()
    rep, _ = reporter(store, CrashingTelemetry())

    with pytest.raises(SimulatedCrash):
        rep.report(after(OtaState.UPDATING), OtaState.UPDATED, current="v1.1", subject="v1.1")
    assert store.last_answer is None

    again, sink = reporter(store)  # the restart
    again.report(after(OtaState.UPDATING), OtaState.UPDATED, current="v1.1", subject="v1.1")
    assert sink.states == ["UPDATED"]


def test_a_report_that_is_not_published_leaves_the_stored_answer_alone() -> None:
    """A start-up launch (nothing assigned): neither told nor remembered."""
    store = FakeStore()
    store.last_answer = Answer(OtaState.FAILED, "v1.1")
    rep, sink = reporter(store)

    rep.report(OtaProgress(), OtaState.DOWNLOADING, subject="v1.1", publish=False)
    rep.report(
        after(OtaState.UPDATING), OtaState.UPDATED, current="v1.1", subject="v1.1", publish=False
    )

    assert sink.reports == []
    assert store.last_answer == Answer(OtaState.FAILED, "v1.1")


def test_a_store_that_cannot_write_the_answer_does_not_stop_any_report() -> None:
    store = AnswerUnwritable()
    rep, sink = reporter(store)
    progress = OtaProgress()

    for state in SUCCESS:
        rep.report(progress, OtaState(state), current="v1.1", subject="v1.1")

    assert sink.states == SUCCESS
    assert store.attempts == [None, Answer(OtaState.UPDATED, "v1.1")]


def test_a_store_that_cannot_write_the_answer_repeats_the_terminal_state_next_time() -> None:
    """What the lost write costs: the same UPDATED told again, never a lost one."""
    store = AnswerUnwritable()
    rep, sink = reporter(store)

    for _ in range(2):
        rep.report(after(OtaState.UPDATING), OtaState.UPDATED, current="v1.1", subject="v1.1")

    assert sink.states == ["UPDATED", "UPDATED"]


def test_a_store_that_cannot_read_the_answer_publishes() -> None:
    rep, sink = reporter(AnswerUnreadable())

    rep.report(after(OtaState.UPDATING), OtaState.UPDATED, current="v1.1", subject="v1.1")

    assert sink.states == ["UPDATED"]


# ------------------------------------------------------------- through the UpdateService


class ClearJournalCrashes(FakeStore):
    """The power goes while the finished update's journal is being cleared."""

    crash = True

    def clear_journal(self) -> None:
        if self.crash:
            self.crash = False
            raise SimulatedCrash("clear journal")
        super().clear_journal()


def world_with(store: FakeStore) -> World:
    world = World()
    store.launched, store.good = world.store.launched, world.store.good
    world.store = store
    world.service = world.new_service()
    return world


def test_updated_told_before_a_crash_is_not_told_again_by_the_recovery() -> None:
    world = world_with(ClearJournalCrashes())
    with pytest.raises(SimulatedCrash):
        world.service.handle_request(world.request("v1.1"))
    assert world.telemetry.states == SUCCESS
    assert world.store.current_journal is not None  # COMMITTING, left by the crash

    result = world.new_service().recover()

    assert result.outcome is Outcome.UPDATED
    assert world.telemetry.states == SUCCESS  # one UPDATED, not two
    assert world.store.current_journal is None
    assert world.runtime.running_version == "v1.1"


def test_updated_not_yet_remembered_before_a_crash_is_told_again_by_the_recovery() -> None:
    """The crash came between the publish and storing the answer: repeated, not lost."""
    world = World()
    world.service.handle_request(world.request("v1.1"))
    world.store.last_answer = None
    world.store.current_journal = UpdateJournal(
        "v1.1", "v1.0", JournalPhase.COMMITTING, 0.0, reported=OtaState.UPDATING, commit=C2
    )

    world.new_service().recover()

    assert world.telemetry.states == [*SUCCESS, "UPDATED"]
    assert world.store.last_answer == Answer(OtaState.UPDATED, "v1.1")


def test_the_re_sent_assignment_after_a_restart_is_not_answered_again() -> None:
    world = World()
    world.service.handle_request(world.request("v1.1"))
    assert world.store.last_answer == Answer(OtaState.UPDATED, "v1.1")

    result = world.new_service().handle_request(world.request("v1.1"))

    assert result.outcome is Outcome.ALREADY_RUNNING
    assert world.telemetry.states == SUCCESS


def test_a_new_assignment_after_an_answered_one_is_reported_in_full() -> None:
    world = World()
    world.service.handle_request(world.request("v1.1"))

    world.service.handle_request(world.request("v1.2"))

    assert world.telemetry.states == [*SUCCESS, *SUCCESS]
    assert world.store.last_answer == Answer(OtaState.UPDATED, "v1.2")
