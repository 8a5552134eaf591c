"""Start-up never depends on teg-ota's own files: the controller is started from the first
version that can be, and a store that cannot write does not stop it (issue 17)."""

from __future__ import annotations

from teg_ota.domain.model.journal import FailedVersion, JournalPhase, UpdateJournal
from teg_ota.domain.model.ota_state import OtaState
from teg_ota.domain.model.outcome import Outcome

from .test_update_service import C1, World, tag


def stopped_world() -> World:
    """v1.0 (C1) ran and was stopped (a reboot); its container is still there."""
    world = World()
    world.runtime.stop_controller(10)
    world.runtime.calls.clear()
    return world


def test_the_last_launched_version_is_started() -> None:
    world = stopped_world()
    assert world.gateway.ensure_running().outcome is Outcome.UPDATED
    assert world.runtime.running_version == "v1.0"


def test_without_a_readable_version_file_the_stopped_containers_version_is_started() -> None:
    world = stopped_world()
    world.store.launched = None  # the file was empty or corrupt, no default configured
    result = world.gateway.ensure_running()
    assert result.outcome is Outcome.UPDATED, result
    assert world.runtime.running_version == "v1.0"
    assert world.runtime.controller_state().commit == C1


def test_a_last_launched_version_that_cannot_start_falls_back_to_the_next() -> None:
    world = stopped_world()
    world.store.launched = "v9.9"  # no image, not on the remote: cannot be started
    result = world.gateway.ensure_running()
    assert result.outcome is Outcome.UPDATED, result
    assert world.runtime.running_version == "v1.0"


def test_a_store_that_cannot_write_still_starts_and_reports_the_controller() -> None:
    world = stopped_world()
    world.store.fail_writes = True
    result = world.gateway.ensure_running()
    assert result.outcome is Outcome.UPDATED, result
    assert world.runtime.running_version == "v1.0"
    assert f"run {tag('v1.0')}" in world.runtime.calls
    assert world.telemetry.values[-1].get("current_sw_version") == "v1.0", "what runs is told"


def test_nothing_known_at_all_leaves_it_to_the_watchdog() -> None:
    world = World()
    world.runtime.container = None
    world.store.launched = None
    result = world.gateway.ensure_running()
    assert result.outcome is Outcome.FAILED
    assert result.error == "no controller version known"


def test_a_last_launched_version_that_cannot_start_falls_back_to_the_default() -> None:
    world = stopped_world()
    world.runtime.container = None  # no stopped container to learn from either
    world.store.launched, world.store.default = "v9.9", "v1.0"
    result = world.gateway.ensure_running()
    assert result.outcome is Outcome.UPDATED, result
    assert world.runtime.running_version == "v1.0"


# --- a disk that turned read-only after the facts (review of issue 17) --------------------------


def test_a_recovery_after_updated_on_a_read_only_disk_does_not_undo_it() -> None:
    """Killed right after UPDATED (journal left at COMMITTING, success recorded), then the
    card turned read-only: recovery must not roll back what was reported."""

    world = World()
    assert world.service.handle_request(world.request("v1.1")).outcome is Outcome.UPDATED
    world.store.current_journal = UpdateJournal(
        "v1.1", "v1.0", JournalPhase.COMMITTING, 0.0, reported=OtaState.UPDATING
    )
    world.telemetry.reports.clear()
    world.store.fail_writes = True

    world.new_service().recover()

    assert "FAILED" not in world.telemetry.states, world.telemetry.states
    assert world.runtime.running_version == "v1.1"
    assert world.store.launched == "v1.1"


def test_an_unwritable_failure_record_still_gets_the_assignment_answered() -> None:

    world = World()
    world.store.failed_version = FailedVersion("v1.2", "exited with code 3")
    world.store.fail_writes = True
    original = world.store.set_failed

    def set_failed(failed: FailedVersion | None) -> None:
        world.store._write_check()
        original(failed)

    world.store.set_failed = set_failed  # type: ignore[method-assign]

    result = world.service.handle_request(world.request("v1.1"))  # must not raise

    assert result.outcome is Outcome.FAILED
    assert world.telemetry.states.count("FAILED") == 1
    assert "disk is read-only" in str(world.telemetry.terminal[-1].error)
    assert world.runtime.running_version == "v1.0"
