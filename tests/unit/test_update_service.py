"""The safe update driven through every failure point, with in-memory fakes of every port."""

from __future__ import annotations

import threading
from collections.abc import Mapping

import pytest

from teg_ota.app.exclusive import Exclusive
from teg_ota.app.gateway import Gateway
from teg_ota.domain.core import recovery
from teg_ota.domain.core.ota_messages import OtaRequest
from teg_ota.domain.model.journal import FailedVersion, JournalPhase, UpdateJournal
from teg_ota.domain.model.ota_state import OtaState
from teg_ota.domain.model.outcome import Outcome
from teg_ota.domain.model.settings import UpdateSettings, WatchdogSettings
from teg_ota.domain.model.versions import image_tag, parse_version
from teg_ota.domain.services.update_service import UpdateService
from teg_ota.domain.services.watchdog import Watchdog
from teg_ota.ports import Health

from .fakes import (
    PREFIX,
    Behaviour,
    FakeClock,
    FakeRepo,
    FakeRepoSource,
    FakeRuntime,
    FakeStore,
    FakeTelemetry,
    SimulatedCrash,
)

C1, C2, C3, C4 = ("1" * 40, "2" * 40, "3" * 40, "4" * 40)
SUCCESS = ["DOWNLOADING", "DOWNLOADED", "VERIFIED", "UPDATING", "UPDATED"]


def tag(version: str) -> str:
    return image_tag(PREFIX, parse_version(version))


class World:
    """A gateway running v1.0 (commit C1), with v1.1 (C2) and v1.2 (C3) on the remote."""

    def __init__(self, **settings: object) -> None:
        self.clock = FakeClock()
        self.runtime = FakeRuntime(self.clock)
        self.repo = FakeRepo()
        self.telemetry = FakeTelemetry()
        self.store = FakeStore()
        self.settings = UpdateSettings(
            image_prefix=PREFIX,
            sw_title="teg-controller",
            health_grace_s=10,
            health_timeout_s=30,
            **settings,  # type: ignore[arg-type]
        )
        self.repo.add_tag("v1.0", C1)
        self.repo.add_tag("v1.1", C2, remote_only=True)
        self.repo.add_tag("v1.2", C3, remote_only=True)
        self.repo.commits.add(C4)
        self.runtime.add_image(tag("v1.0"), "v1.0", C1)
        self.runtime.start_existing(tag("v1.0"))
        self.store.launched = "v1.0"
        self.store.good = "v1.0"
        self.service = self.new_service()
        self._gateway: Gateway | None = None

    def new_service(self) -> UpdateService:
        return UpdateService(
            self.runtime,
            FakeRepoSource(self.repo),
            self.telemetry,
            self.store,
            self.clock,
            self.settings,
        )

    @property
    def gateway(self) -> Gateway:
        """The service behind the facade and its one Exclusive, as the runner, the CLI and
        the compat names use it (built once per World)."""
        if self._gateway is None:
            watchdog = Watchdog(
                self.runtime, self.store, self.telemetry, self.clock, self.service,
                WatchdogSettings(),
            )
            self._gateway = Gateway(self.service, watchdog, self.runtime, self.store, Exclusive())
        return self._gateway

    def request(self, version: str, title: str | None = "teg-controller") -> OtaRequest:
        return OtaRequest(version=version, title=title)

    def stopped_before_image_existed(self, version: str) -> bool:
        calls = self.runtime.calls
        if "stop" not in calls:
            return False
        build = f"build {tag(version)}"
        return build not in calls or calls.index("stop") < calls.index(build)


@pytest.fixture
def world() -> World:
    return World()


def slow_build(world: World) -> tuple[threading.Event, threading.Event]:
    """Make the next build wait for ``release``; ``building`` is set when it started."""
    building, release = threading.Event(), threading.Event()
    original = world.runtime.build_image

    def build(*args, **kwargs):  # type: ignore[no-untyped-def]
        building.set()
        release.wait(10)
        original(*args, **kwargs)

    world.runtime.build_image = build  # type: ignore[method-assign]
    return building, release


# ------------------------------------------------------------------ success paths


def test_successful_update_reports_each_state_once_then_current_version(world: World) -> None:
    result = world.service.handle_request(world.request("v1.1"))

    assert result.outcome is Outcome.UPDATED
    assert world.telemetry.states == SUCCESS
    last = world.telemetry.reports[-1]
    assert (last.current_title, last.current_version) == ("teg-controller", "v1.1")
    assert world.runtime.running_version == "v1.1"
    assert (world.store.launched, world.store.good) == ("v1.1", "v1.1")
    assert world.store.current_journal is None


def test_new_image_is_built_before_the_old_controller_stops(world: World) -> None:
    world.service.handle_request(world.request("v1.1"))

    calls = world.runtime.calls
    assert (
        calls.index(f"build {tag('v1.1')}")
        < calls.index("stop")
        < calls.index(f"run {tag('v1.1')}")
    )
    assert world.repo.calls[:3] == ["fetch", "resolve v1.1", f"reset {C2}"]


def test_journal_is_written_before_every_phase(world: World) -> None:
    world.service.handle_request(world.request("v1.1"))

    assert world.store.phases == [
        JournalPhase.PREPARING,
        JournalPhase.SWAPPING,
        JournalPhase.HEALTH_CHECK,
        JournalPhase.COMMITTING,
    ]


def test_update_to_a_full_commit_hash(world: World) -> None:
    result = world.service.handle_request(world.request(C4.upper()))

    assert result.outcome is Outcome.UPDATED
    assert world.runtime.running_version == C4
    assert world.runtime.images[f"{PREFIX}{C4}:latest"]["org.teg.controller.commit"] == C4


def test_image_is_labelled_with_version_and_resolved_commit(world: World) -> None:
    world.service.handle_request(world.request("v1.1"))

    assert world.runtime.images[tag("v1.1")] == {
        "org.teg.controller.version": "v1.1",
        "org.teg.controller.commit": C2,
    }


def test_existing_image_with_the_right_commit_is_not_rebuilt(world: World) -> None:
    world.runtime.add_image(tag("v1.1"), "v1.1", C2)

    world.service.handle_request(world.request("v1.1"))

    assert f"build {tag('v1.1')}" not in world.runtime.calls
    assert world.telemetry.states == SUCCESS


def test_moved_tag_rebuilds_the_image(world: World) -> None:
    world.runtime.add_image(tag("v1.1"), "v1.1", C4)  # built when v1.1 pointed at C4

    world.service.handle_request(world.request("v1.1"))

    assert f"build {tag('v1.1')}" in world.runtime.calls
    assert world.runtime.images[tag("v1.1")]["org.teg.controller.commit"] == C2


def test_fetch_failure_with_a_cached_image_still_updates(world: World) -> None:
    world.runtime.add_image(tag("v1.1"), "v1.1", C2)
    world.repo.fetch_fails = "network unreachable"

    result = world.service.handle_request(world.request("v1.1"))

    assert result.outcome is Outcome.UPDATED


def test_build_log_and_phases_reach_the_progress_listener(world: World) -> None:
    lines: list[str] = []

    world.service.handle_request(world.request("v1.1"), on_progress=lines.append)

    assert "Successfully built" in lines
    assert any(line.startswith("[UPDATED]") for line in lines)


def test_already_running_version_is_confirmed_once(world: World) -> None:
    first = world.service.handle_request(world.request("v1.0"))
    second = world.service.handle_request(world.request("v1.0"))

    assert first.outcome is second.outcome is Outcome.ALREADY_RUNNING
    assert world.telemetry.states == ["UPDATED"]
    assert world.telemetry.reports[0].current_version == "v1.0"
    assert world.runtime.calls == []


def test_another_title_fails_once_naming_both_and_touches_nothing(world: World) -> None:
    result = world.service.handle_request(world.request("v1.1", title="other-product"))

    assert result.outcome is Outcome.FAILED
    assert world.telemetry.states == ["FAILED"]
    error = world.telemetry.reports[0].error or ""
    assert "'other-product'" in error and "'teg-controller'" in error
    assert world.repo.calls == []
    assert world.runtime.running_version == "v1.0"


def test_old_images_are_collected_keeping_current_previous_and_one_more(world: World) -> None:
    for version, commit in (("v0.7", C4), ("v0.8", C4), ("v0.9", C4)):
        world.runtime.add_image(tag(version), version, commit)

    world.service.handle_request(world.request("v1.1"))

    assert set(world.runtime.images) == {tag("v1.1"), tag("v1.0"), tag("v0.9")}
    assert "prune" in world.runtime.calls


# ------------------------------------------------------- failures before the swap


def _unknown(world: World) -> str:
    return "v9.9"


def _build_fails(world: World) -> str:
    world.runtime.build_fails = "The command '/bin/sh -c make' returned a non-zero code: 2"
    return "v1.1"


def _disk_full(world: World) -> str:
    world.runtime.free_bytes = 100 * 2**20
    return "v1.1"


def _fetch_fails(world: World) -> str:
    world.repo.fetch_fails = "could not reach origin"
    return "v1.1"


def _reset_fails(world: World) -> str:
    world.repo.reset_fails = True
    return "v1.1"


def _runtime_down(world: World) -> str:
    world.runtime.unavailable = True
    return "v1.1"


def _mislabelled_build(world: World) -> str:
    original = world.runtime.build_image

    def build(context_dir, image, labels, on_progress=None):  # type: ignore[no-untyped-def]
        original(context_dir, image, {**labels, "org.teg.controller.commit": C4}, on_progress)

    world.runtime.build_image = build  # type: ignore[method-assign]
    return "v1.1"


BEFORE_SWAP = {
    "unknown version": (_unknown, "no such tag or commit"),
    "build fails": (_build_fails, "returned a non-zero code: 2"),
    "disk full": (_disk_full, "MiB free"),
    "fetch fails": (_fetch_fails, "could not reach origin"),
    "reset fails": (_reset_fails, "work tree is locked"),
    "verification fails": (_mislabelled_build, "carries commit"),
}


@pytest.mark.parametrize("inject", BEFORE_SWAP.values(), ids=BEFORE_SWAP.keys())
def test_failure_before_the_swap_leaves_the_old_controller_running(
    world: World, inject: tuple[object, str]
) -> None:
    injector, message = inject
    version = injector(world)  # type: ignore[operator]

    result = world.service.handle_request(world.request(version))

    assert result.outcome is Outcome.FAILED
    assert "stop" not in world.runtime.calls
    assert world.runtime.running_version == "v1.0"
    assert len(world.telemetry.terminal) == 1
    failed = world.telemetry.reports[-1]
    assert failed.state.value == "FAILED"
    assert message in (failed.error or "")
    assert "v1.0 kept running" in (failed.error or "")
    assert failed.current_version == "v1.0"
    assert world.store.current_journal is None
    assert world.store.launched == "v1.0"


def test_runtime_unavailable_reports_failed_without_touching_anything(world: World) -> None:
    _runtime_down(world)

    result = world.service.handle_request(world.request("v1.1"))

    assert result.outcome is Outcome.FAILED
    assert world.telemetry.states == ["FAILED"]
    assert world.repo.calls == []


def test_disk_floor_is_checked_before_building(world: World) -> None:
    _disk_full(world)

    world.service.handle_request(world.request("v1.1"))

    assert not any(call.startswith("build") for call in world.runtime.calls)
    assert f"reset {C2}" not in world.repo.calls


def test_invalid_version_is_rejected_before_any_git_or_docker_call(world: World) -> None:
    result = world.service.handle_request(world.request("--upload-pack=touch /tmp/x"))

    assert result.outcome is Outcome.FAILED
    assert world.repo.calls == []
    assert world.runtime.calls == []
    assert world.telemetry.states == ["FAILED"]
    assert "must not start with '-'" in (world.telemetry.reports[0].error or "")


def test_failed_version_is_not_retried_when_the_attributes_come_again(world: World) -> None:
    world.service.handle_request(world.request("v9.9"))
    reports = len(world.telemetry.reports)

    again = world.service.handle_request(world.request("v9.9"))

    assert again.outcome is Outcome.REFUSED
    assert len(world.telemetry.reports) == reports
    assert world.store.failed_version is not None


def test_transient_failure_is_retried_on_the_next_request(world: World) -> None:
    _fetch_fails(world)
    world.service.handle_request(world.request("v1.1"))
    world.repo.fetch_fails = None

    again = world.service.handle_request(world.request("v1.1"))

    assert again.outcome is Outcome.UPDATED


def test_a_different_version_clears_the_failure_and_force_retries(world: World) -> None:
    world.service.handle_request(world.request("v9.9"))
    world.service.handle_request(world.request("v1.1"))
    assert world.store.failed_version is None

    world.store.failed_version = FailedVersion("v1.2", "broken")
    assert world.service.start_controller("v1.2").outcome is Outcome.REFUSED
    assert world.service.start_controller("v1.2", force=True).outcome is Outcome.UPDATED


def test_reassigning_the_running_version_after_a_rollback_confirms_it(world: World) -> None:
    world.runtime.behaviours["v1.1"] = Behaviour(exits_after_s=1)
    world.service.handle_request(world.request("v1.0"))
    world.service.handle_request(world.request("v1.1"))  # rolled back to v1.0

    world.service.handle_request(world.request("v1.0"))

    assert world.telemetry.states[-1] == "UPDATED"
    assert world.telemetry.reports[-1].current_version == "v1.0"
    assert world.store.failed_version is None


# ------------------------------------------------- failures at or after the swap


def test_new_controller_exiting_in_the_grace_period_is_rolled_back(world: World) -> None:
    world.runtime.behaviours["v1.1"] = Behaviour(exits_after_s=3, exit_code=3)

    result = world.service.handle_request(world.request("v1.1"))

    assert result.outcome is Outcome.ROLLED_BACK
    assert world.runtime.running_version == "v1.0"
    assert world.telemetry.states == [*SUCCESS[:4], "FAILED"]
    failed = world.telemetry.reports[-1]
    assert "v1.0" in (failed.error or "") and "v1.1" in (failed.error or "")
    assert "exited with code 3" in (failed.error or "")
    assert failed.current_version == "v1.0"
    assert world.store.failed_version is not None
    assert world.store.failed_version.version == "v1.1"
    assert (world.store.launched, world.store.good) == ("v1.0", "v1.0")
    assert world.store.current_journal is None
    assert world.service.handle_request(world.request("v1.1")).outcome is Outcome.REFUSED


def test_start_failure_is_rolled_back(world: World) -> None:
    world.runtime.start_fails_for.add("v1.1")

    result = world.service.handle_request(world.request("v1.1"))

    assert result.outcome is Outcome.ROLLED_BACK
    assert world.runtime.running_version == "v1.0"
    assert "/dev/i2c-1" in (world.telemetry.reports[-1].error or "")


def test_unhealthy_controller_is_rolled_back(world: World) -> None:
    world.runtime.behaviours["v1.1"] = Behaviour(health=Health.UNHEALTHY)

    result = world.service.handle_request(world.request("v1.1"))

    assert result.outcome is Outcome.ROLLED_BACK
    assert "unhealthy" in (world.telemetry.reports[-1].error or "")


def test_healthcheck_that_never_turns_healthy_is_rolled_back(world: World) -> None:
    world.runtime.behaviours["v1.1"] = Behaviour(health=Health.STARTING)

    result = world.service.handle_request(world.request("v1.1"))

    assert result.outcome is Outcome.ROLLED_BACK
    assert "did not report healthy within 40 s" in (world.telemetry.reports[-1].error or "")


def test_rollback_rebuilds_a_previous_image_that_is_gone(world: World) -> None:
    world.runtime.behaviours["v1.1"] = Behaviour(exits_after_s=1)
    world.runtime.images.pop(tag("v1.0"))

    result = world.service.handle_request(world.request("v1.1"))

    assert result.outcome is Outcome.ROLLED_BACK
    assert world.runtime.running_version == "v1.0"
    assert f"build {tag('v1.0')}" in world.runtime.calls


def test_first_install_without_a_previous_version_fails_cleanly() -> None:
    world = World()
    world.runtime.container = None
    world.store.launched = world.store.good = None
    world.runtime.behaviours["v1.1"] = Behaviour(exits_after_s=1)

    result = world.service.handle_request(world.request("v1.1"))

    assert result.outcome is Outcome.FAILED
    assert "no previous version could be started" in (result.error or "")
    assert len(world.telemetry.terminal) == 1


def test_start_controller_safely_never_raises(world: World) -> None:
    def broken() -> None:
        raise ValueError("bug in an adapter")

    world.runtime.controller_state = broken  # type: ignore[assignment,method-assign]

    result = world.service.start_controller_safely("v1.1")

    assert result.outcome is Outcome.FAILED
    assert "bug in an adapter" in (result.error or "")


# ------------------------------------------------------ queueing: latest wins


def test_requests_during_an_update_are_coalesced_latest_wins(world: World) -> None:
    sent: list[Outcome] = []

    def during_build(line: str) -> None:
        if line == "Successfully built" and not sent:
            sent.append(world.gateway.handle_request(world.request("v1.2")).outcome)
            sent.append(world.gateway.handle_request(world.request(C4)).outcome)

    result = world.gateway.handle_request(world.request("v1.1"), on_progress=during_build)
    assert world.gateway.wait_idle(10)

    assert sent == [Outcome.DEFERRED, Outcome.DEFERRED]
    assert result.outcome is Outcome.UPDATED
    assert world.runtime.running_version == C4
    assert f"build {tag('v1.2')}" not in world.runtime.calls
    assert world.telemetry.states == SUCCESS + SUCCESS


# --------------------------------------------- crash at every phase, then recover

CRASH_PHASES = [
    JournalPhase.PREPARING,
    JournalPhase.SWAPPING,
    JournalPhase.HEALTH_CHECK,
    JournalPhase.ROLLING_BACK,
    JournalPhase.COMMITTING,
]


CRASH_MATRIX = [
    # (killed right after journalling, power cut?): (outcome, running after, remembered)
    (JournalPhase.PREPARING, False, Outcome.FAILED, "v1.0", False),
    (JournalPhase.PREPARING, True, Outcome.ROLLED_BACK, "v1.0", False),
    (JournalPhase.SWAPPING, False, Outcome.ROLLED_BACK, "v1.0", False),
    (JournalPhase.SWAPPING, True, Outcome.ROLLED_BACK, "v1.0", False),
    (JournalPhase.HEALTH_CHECK, False, Outcome.UPDATED, "v1.1", False),
    (JournalPhase.HEALTH_CHECK, True, Outcome.ROLLED_BACK, "v1.0", False),
    (JournalPhase.ROLLING_BACK, False, Outcome.ROLLED_BACK, "v1.0", True),
    (JournalPhase.ROLLING_BACK, True, Outcome.ROLLED_BACK, "v1.0", True),
    (JournalPhase.COMMITTING, False, Outcome.UPDATED, "v1.1", False),
    (JournalPhase.COMMITTING, True, Outcome.UPDATED, "v1.1", False),
]


@pytest.mark.parametrize(
    ("phase", "power_cut", "outcome", "running", "remembered"),
    CRASH_MATRIX,
    ids=[f"{row[0].value}-{'power-cut' if row[1] else 'runner-killed'}" for row in CRASH_MATRIX],
)
def test_recovery_after_a_crash_in_any_phase_ends_exactly_as_the_tables_say(
    world: World,
    phase: JournalPhase,
    power_cut: bool,
    outcome: Outcome,
    running: str | None,
    remembered: bool,
) -> None:
    if phase is JournalPhase.ROLLING_BACK:
        world.runtime.behaviours["v1.1"] = Behaviour(exits_after_s=2)
    world.store.crash_before = phase

    with pytest.raises(SimulatedCrash):
        world.service.handle_request(world.request("v1.1"))
    if power_cut and world.runtime.container is not None:
        world.runtime.container.running = False
    world.clock.advance(60)

    result = world.new_service().recover()

    assert result.outcome is outcome
    assert world.runtime.running_version == running
    assert world.store.current_journal is None
    assert (world.store.failed_version is not None) is remembered
    assert len(world.telemetry.terminal) == 1
    terminal = world.telemetry.terminal[0]
    assert terminal.current_version == running
    assert terminal.state is (OtaState.UPDATED if running == "v1.1" else OtaState.FAILED)
    assert world.store.launched == running


def test_crash_in_health_window_keeps_a_healthy_new_controller(world: World) -> None:
    world.store.crash_before = JournalPhase.HEALTH_CHECK
    with pytest.raises(SimulatedCrash):
        world.service.handle_request(world.request("v1.1"))

    result = world.new_service().recover()

    assert result.outcome is Outcome.UPDATED
    assert world.runtime.running_version == "v1.1"
    assert world.telemetry.states == SUCCESS


def test_crash_in_health_window_rolls_back_a_controller_that_then_dies(world: World) -> None:
    world.runtime.behaviours["v1.1"] = Behaviour(exits_after_s=5, exit_code=4)
    world.store.crash_before = JournalPhase.HEALTH_CHECK
    with pytest.raises(SimulatedCrash):
        world.service.handle_request(world.request("v1.1"))

    result = world.new_service().recover()

    assert result.outcome is Outcome.ROLLED_BACK
    assert world.runtime.running_version == "v1.0"
    assert "exited with code 4" in (world.telemetry.reports[-1].error or "")


def test_recover_without_a_journal_does_nothing(world: World) -> None:
    assert world.service.recover().outcome is Outcome.NOTHING_TO_RECOVER
    assert world.runtime.calls == []
    assert world.telemetry.reports == []


# ------------------------------------------------------------ seed's other duties


def test_stop_controller_remembers_the_running_version(world: World) -> None:
    world.store.launched = None

    world.service.stop_controller()

    assert world.store.launched == "v1.0"
    assert world.runtime.running_version is None


def test_launch_restarts_from_the_existing_image_without_ota_states(world: World) -> None:
    world.runtime.kill()

    result = world.service.launch("v1.0")

    assert result.outcome is Outcome.UPDATED
    assert world.runtime.running_version == "v1.0"
    assert world.telemetry.reports == []


def test_launch_builds_a_missing_image_through_the_safe_update(world: World) -> None:
    world.runtime.container = None

    result = world.service.launch("v1.1")

    assert result.outcome is Outcome.UPDATED
    assert world.runtime.running_version == "v1.1"
    assert world.telemetry.states == []  # nothing was assigned: no sw_state at all
    assert {"current_sw_title": "teg-controller", "current_sw_version": "v1.1"} in (
        world.telemetry.values
    )


def test_rollback_command_returns_to_the_known_good_version(world: World) -> None:
    world.service.handle_request(world.request("v1.1"))
    world.store.good = "v1.0"

    result = world.service.rollback()

    assert result.outcome is Outcome.UPDATED
    assert world.runtime.running_version == "v1.0"


def test_attribute_payload_returns_the_seeds_bool(world: World) -> None:
    assert world.gateway.handle_attributes(b'{"sw_title":"teg-controller","sw_version":"v1.1"}')
    assert world.runtime.running_version == "v1.1"
    assert world.gateway.handle_attributes(b'{"deleted":["sw_url"]}')
    assert not world.gateway.handle_attributes(b'{"fw_version":"x"}')
    assert not world.gateway.handle_attributes(b"\xff\xfe garbage")


def test_interrupted_preparation_is_reported_but_retried_later(world: World) -> None:
    world.store.crash_before = JournalPhase.PREPARING
    with pytest.raises(SimulatedCrash):
        world.service.handle_request(world.request("v1.1"))
    service = world.new_service()
    service.recover()

    again = service.handle_request(world.request("v1.1"))

    assert again.outcome is Outcome.UPDATED
    assert world.telemetry.states == ["FAILED", *SUCCESS]


# ------------------------------------------------- regressions from the review


def test_recovery_waits_for_the_engine_and_keeps_the_journal(world: World) -> None:
    world.store.crash_before = JournalPhase.HEALTH_CHECK
    with pytest.raises(SimulatedCrash):
        world.service.handle_request(world.request("v1.1"))
    world.runtime.unavailable = True

    waiting = world.new_service().recover()

    assert waiting.outcome is Outcome.FAILED
    assert world.store.current_journal is not None
    assert world.telemetry.terminal == []
    assert world.store.failed_version is None

    world.runtime.unavailable = False
    assert world.new_service().recover().outcome is Outcome.UPDATED
    assert world.telemetry.states == SUCCESS


def test_engine_lost_during_rollback_reports_once_after_it_returns(world: World) -> None:
    world.runtime.behaviours["v1.1"] = Behaviour(exits_after_s=1)
    original = world.runtime.run_controller

    def engine_gone_when_rolling_back(image: str, labels: Mapping[str, str]) -> None:
        journal = world.store.current_journal
        if journal is not None and journal.phase is JournalPhase.ROLLING_BACK:
            world.runtime.unavailable = True
        original(image, labels)

    world.runtime.run_controller = engine_gone_when_rolling_back  # type: ignore[method-assign]

    world.service.handle_request(world.request("v1.1"))

    assert world.telemetry.terminal == []
    assert world.store.current_journal is not None
    assert world.store.current_journal.phase is JournalPhase.ROLLING_BACK
    world.runtime.unavailable = False
    world.runtime.run_controller = original  # type: ignore[method-assign]
    world.new_service().recover()
    assert world.runtime.running_version == "v1.0"
    assert [r.state.value for r in world.telemetry.terminal] == ["FAILED"]
    assert "exited with code 1" in (world.telemetry.terminal[0].error or "")


def test_a_power_cut_after_updated_never_turns_into_failed(world: World) -> None:
    world.service.handle_request(world.request("v1.1"))
    assert world.telemetry.states == SUCCESS
    # As if the journal had not been cleared yet when the power went:
    world.store.current_journal = UpdateJournal(
        "v1.1", "v1.0", JournalPhase.COMMITTING, 0.0, reported=OtaState.UPDATING, commit=C2
    )
    world.runtime.kill()
    world.runtime.start_fails_for.add("v1.1")

    world.new_service().recover()

    assert "FAILED" not in world.telemetry.states
    assert world.store.good == "v1.1"


def test_requests_deferred_by_another_thread_are_served(world: World) -> None:
    building, release = slow_build(world)
    worker = threading.Thread(target=world.gateway.update, args=("v1.1",))
    worker.start()
    assert building.wait(5)

    assert world.gateway.handle_request(world.request("v1.2")).outcome is Outcome.DEFERRED
    assert world.gateway.handle_request(world.request(C4)).outcome is Outcome.DEFERRED
    release.set()
    worker.join(10)
    assert world.gateway.wait_idle(10)

    assert world.runtime.running_version == C4
    assert f"build {tag('v1.2')}" not in world.runtime.calls


def test_controller_of_unknown_version_rolls_back_to_the_known_good(world: World) -> None:
    world.runtime.images["someone-elses-image:latest"] = {}
    world.runtime.start_existing("someone-elses-image:latest")
    world.runtime.behaviours["v1.1"] = Behaviour(exits_after_s=1)

    result = world.service.handle_request(world.request("v1.1"))

    assert result.outcome is Outcome.ROLLED_BACK
    assert world.runtime.running_version == "v1.0"


def test_nothing_running_after_a_failure_is_reported_as_such(world: World) -> None:
    world.runtime.container = None
    world.store.launched = world.store.good = None
    world.runtime.behaviours["v1.1"] = Behaviour(exits_after_s=1)

    world.service.handle_request(world.request("v1.1"))

    assert world.telemetry.terminal[0].current_version == ""


def test_a_failing_progress_listener_does_not_fail_the_update(world: World) -> None:
    def broken_pipe(line: str) -> None:
        raise BrokenPipeError(line)

    result = world.service.handle_request(world.request("v1.1"), on_progress=broken_pipe)

    assert result.outcome is Outcome.UPDATED
    assert world.telemetry.states == SUCCESS


def test_an_unexpected_error_before_the_swap_is_one_failed(world: World) -> None:
    def broken(tag: str) -> int:
        raise ValueError("surprise")

    world.runtime.free_disk_bytes = broken  # type: ignore[assignment,method-assign]

    result = world.service.handle_request(world.request("v1.1"))

    assert result.outcome is Outcome.FAILED
    assert world.telemetry.states == ["DOWNLOADING", "FAILED"]
    assert world.runtime.running_version == "v1.0"


def test_rollback_command_after_a_successful_update_goes_back_one(world: World) -> None:
    world.service.handle_request(world.request("v1.1"))

    result = world.service.rollback()

    assert result.outcome is Outcome.UPDATED
    assert world.runtime.running_version == "v1.0"


def test_force_matches_a_commit_in_any_case(world: World) -> None:
    world.store.failed_version = FailedVersion(C4, "broken")

    assert world.service.start_controller(C4.upper(), force=True).outcome is Outcome.UPDATED


def test_interrupted_preparation_leaves_a_running_controller_alone(world: World) -> None:
    world.store.crash_before = JournalPhase.PREPARING
    with pytest.raises(SimulatedCrash):
        world.service.handle_request(world.request("v1.1"))
    world.runtime.calls.clear()

    world.new_service().recover()

    assert world.runtime.calls == []
    assert world.telemetry.terminal[0].current_version == "v1.0"


def test_a_journal_recovery_cannot_process_does_not_block_the_watchdog(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.store.current_journal = UpdateJournal("v1.1", "v1.0", JournalPhase.SWAPPING, 0.0)
    service = world.new_service()

    def bug(*_: object) -> None:
        raise ValueError("bug")

    monkeypatch.setattr(recovery, "resume", bug)

    result = service.recover()

    assert result.outcome is Outcome.FAILED
    assert "bug" in (result.error or "")
    assert world.store.current_journal is None


def test_a_journal_whose_update_already_ended_is_only_cleared(world: World) -> None:
    world.store.current_journal = UpdateJournal(
        "v1.1", "v1.0", JournalPhase.ROLLING_BACK, 0.0, reported=OtaState.FAILED
    )

    assert world.service.recover().outcome is Outcome.NOTHING_TO_RECOVER
    assert world.store.current_journal is None
    assert world.telemetry.reports == []
    assert world.runtime.calls == []


def test_two_rollbacks_go_back_two_versions(world: World) -> None:
    assert world.service.handle_request(world.request("v1.1")).outcome is Outcome.UPDATED
    assert world.service.handle_request(world.request("v1.2")).outcome is Outcome.UPDATED
    assert world.runtime.running_version == "v1.2"

    first = world.service.rollback()

    assert first.outcome is Outcome.UPDATED
    assert world.runtime.running_version == "v1.1"
    assert (world.store.good, world.store.previous_good) == ("v1.1", "v1.0")

    second = world.service.rollback()  # further back, not forward to v1.2 again

    assert second.outcome is Outcome.UPDATED
    assert world.runtime.running_version == "v1.0"
    assert (world.store.good, world.store.previous_good) == ("v1.0", None)
