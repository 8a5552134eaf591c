"""What ThingsBoard hears in the operator's workflows (issue 10 §2), over the fakes: every
assignment answered once, unassignment as the retry, a rollback on the gateway that sticks,
and memory that survives a restart."""

from __future__ import annotations

import dataclasses
import threading

from teg_ota.domain.core.ota_messages import OtaDeleted
from teg_ota.domain.model.errors import BuildFailed, EngineDiskFull
from teg_ota.domain.model.journal import Answer, FailedVersion
from teg_ota.domain.model.ota_state import OtaState
from teg_ota.domain.model.outcome import Outcome
from teg_ota.domain.services.operator_commands import ROLLED_BACK_BY_OPERATOR

from .fakes import Behaviour
from .test_update_service import SUCCESS, World, slow_build

UNASSIGN = (
    "sw_title", "sw_version", "sw_ts", "sw_state", "sw_size", "sw_checksum",
    "sw_checksum_algorithm", "sw_url", "sw_tag",
)


def failing_v11(world: World) -> None:
    world.runtime.behaviours["v1.1"] = Behaviour(exits_after_s=1)
    assert world.service.handle_request(world.request("v1.1")).outcome is Outcome.ROLLED_BACK
    world.telemetry.reports.clear()


def test_the_assignment_re_sent_after_a_failure_is_not_answered_again() -> None:
    world = World()
    failing_v11(world)

    assert world.service.handle_request(world.request("v1.1")).outcome is Outcome.REFUSED
    assert world.telemetry.reports == []  # the dashboard already shows this FAILED


def test_a_remembered_failure_is_told_once_with_how_to_retry() -> None:
    world = World()
    failing_v11(world)
    world.store.last_answer = None  # e.g. the answer was given by an older release

    first = world.service.handle_request(world.request("v1.1"))
    again = world.service.handle_request(world.request("v1.1"))  # re-sent on reconnect

    assert (first.outcome, again.outcome) == (Outcome.REFUSED, Outcome.REFUSED)
    assert world.telemetry.states == ["FAILED"]
    report = world.telemetry.reports[0]
    assert "exited" in (report.error or "")
    assert "teg-ota update v1.1 --force" in (report.error or "")
    assert "unassign" in (report.error or "")
    assert report.current_version == "v1.0"


def test_unassign_then_assign_again_retries_a_failed_version() -> None:
    world = World()
    failing_v11(world)
    world.runtime.behaviours.pop("v1.1")

    assert world.service.forget_assignment(UNASSIGN) is True
    result = world.service.handle_request(world.request("v1.1"))

    assert result.outcome is Outcome.UPDATED
    assert world.telemetry.states == SUCCESS


def test_a_partial_deletion_beside_an_assignment_forgets_nothing() -> None:
    world = World()
    failing_v11(world)

    assert world.service.forget_assignment(("sw_url", "sw_tag")) is False
    assert world.service.handle_request(world.request("v1.1")).outcome is Outcome.REFUSED


def test_the_running_version_is_confirmed_once_and_again_after_an_unassignment() -> None:
    world = World()

    world.service.handle_request(world.request("v1.0"))
    world.service.handle_request(world.request("v1.0"))
    assert world.telemetry.states == ["UPDATED"]

    world.service.forget_assignment(UNASSIGN)
    world.service.handle_request(world.request("v1.0"))
    assert world.telemetry.states == ["UPDATED", "UPDATED"]


def test_a_restart_does_not_answer_an_assignment_already_answered() -> None:
    """Restart while a new assignment waits in QUEUED: the server answers the old one, and
    a fresh UPDATED would overwrite QUEUED on the dashboard."""
    world = World()
    world.service.handle_request(world.request("v1.1"))
    world.telemetry.reports.clear()

    restarted = world.new_service()
    restarted.handle_request(world.request("v1.1"))

    assert world.telemetry.reports == []
    assert world.store.last_answer == Answer(OtaState.UPDATED, "v1.1")


def test_an_operators_rollback_is_told_and_sticks() -> None:
    world = World()
    world.service.handle_request(world.request("v1.1"))
    world.telemetry.reports.clear()

    result = world.service.rollback()

    assert result.outcome is Outcome.UPDATED
    assert world.runtime.running_version == "v1.0"
    assert world.telemetry.states == ["FAILED"]  # no DOWNLOADING..UPDATED for v1.0
    report = world.telemetry.reports[0]
    assert (report.error, report.current_version) == (ROLLED_BACK_BY_OPERATOR, "v1.0")

    again = world.service.handle_request(world.request("v1.1"))  # re-requested on reconnect
    assert again.outcome is Outcome.REFUSED
    assert world.runtime.running_version == "v1.0"
    assert world.telemetry.states == ["FAILED"]

    assert world.service.handle_request(world.request("v1.2")).outcome is Outcome.UPDATED


def test_an_update_ends_by_asking_for_the_current_assignment_once() -> None:
    world = World()
    before = world.telemetry.attribute_requests

    world.service.handle_request(world.request("v1.1"))

    assert world.telemetry.attribute_requests == before + 1


def test_a_failure_under_other_build_settings_is_retried() -> None:
    world = World(fingerprint="settings-a")
    failing_v11(world)
    assert world.store.failed_version is not None
    assert world.store.failed_version.fingerprint == "settings-a"
    world.runtime.behaviours.pop("v1.1")

    world.settings = dataclasses.replace(world.settings, fingerprint="settings-b")
    result = world.new_service().handle_request(world.request("v1.1"))

    assert result.outcome is Outcome.UPDATED


def test_a_failure_remembered_before_fingerprints_still_counts() -> None:
    world = World(fingerprint="settings-a")
    world.store.failed_version = FailedVersion("v1.1", "broken")

    assert world.service.handle_request(world.request("v1.1")).outcome is Outcome.REFUSED


def test_an_unassignment_cancels_a_queued_update_that_has_not_started() -> None:
    world = World()
    building, release = slow_build(world)
    updater = threading.Thread(target=world.gateway.update, args=("v1.1",))
    updater.start()
    assert building.wait(5)
    assert world.gateway.handle_request(world.request("v1.2")).outcome is Outcome.DEFERRED

    world.gateway.handle_deleted(OtaDeleted(UNASSIGN))
    release.set()
    updater.join(10)
    assert world.gateway.wait_idle(10)

    assert world.runtime.running_version == "v1.1"
    assert "resolve v1.2" not in world.repo.calls


def test_a_rejection_is_told_once_per_assignment() -> None:
    world = World()

    for _ in range(3):  # the push, then the answers on two reconnects
        world.service.handle_request(world.request("v1.1", title="other-product"))
    for _ in range(3):  # the next assignment, a version ThingsBoard would type-cast
        world.service.handle_request(world.request("1.10"))

    assert world.telemetry.states == ["FAILED", "FAILED"]


def test_a_failed_update_does_not_ask_again_so_a_transient_fault_cannot_loop() -> None:
    world = World()
    world.repo.fetch_fails = "remote unreachable"
    before = world.telemetry.attribute_requests

    result = world.service.handle_request(world.request("v1.1"))

    assert result.outcome is Outcome.FAILED
    assert world.store.failed_version is None, "a transient fault is not remembered"
    assert world.telemetry.attribute_requests == before, "the next reconnect retries it"


def test_an_operators_rollback_holds_whatever_the_settings_become() -> None:
    world = World(fingerprint="settings-a")
    world.service.handle_request(world.request("v1.1"))
    world.service.rollback()

    assert world.store.failed_version == FailedVersion("v1.1", ROLLED_BACK_BY_OPERATOR)
    world.settings = dataclasses.replace(world.settings, fingerprint="settings-b")
    world.store.last_answer = None
    again = world.new_service().handle_request(world.request("v1.1"))
    assert again.outcome is Outcome.REFUSED


def test_a_full_engine_disk_during_the_build_is_the_gateways_fault() -> None:
    world = World()
    world.runtime.build_fails = "no space left on device"
    original = world.runtime.build_image

    def full(*args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            original(*args, **kwargs)
        except BuildFailed as exc:
            raise EngineDiskFull(str(exc)) from exc

    world.runtime.build_image = full  # type: ignore[method-assign]

    result = world.service.handle_request(world.request("v1.1"))

    assert result.outcome is Outcome.FAILED
    assert world.store.failed_version is None
    assert world.runtime.running_version == "v1.0"
