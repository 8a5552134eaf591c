"""Start-up never depends on teg-ota's own files: the controller is started from the first
version that can be, and a store that cannot write does not stop it (issue 17)."""

from __future__ import annotations

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
