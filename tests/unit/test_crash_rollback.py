"""The optional crash-after-commit policy (issue 15): a version that crash-loops soon after
its UPDATED goes back to the known-good one, FAILED with the evidence; off by default."""

from __future__ import annotations

from teg_ota.domain.model.outcome import Outcome
from teg_ota.domain.model.settings import WatchdogSettings
from teg_ota.domain.services.watchdog import Watchdog

from .fakes import Behaviour
from .test_update_service import World
from .test_watchdog import POLICY, states


class Guarded(World):
    def __init__(self, within_s: float) -> None:
        super().__init__()
        self.runtime.behaviours["v1.1"] = Behaviour(output=("booting", "FATAL: no serial port"))
        self.watchdog = Watchdog(
            self.runtime,
            self.store,
            self.telemetry,
            self.clock,
            self.service,
            WatchdogSettings(backoff=POLICY, crash_rollback_within_s=within_s),
        )

    def updated_to_v1_1(self) -> None:
        assert self.service.handle_request(self.request("v1.1")).outcome is Outcome.UPDATED
        self.watchdog.tick()  # sees v1.1 running

    def crash_until(self, done, limit_s: float = 600) -> None:  # type: ignore[no-untyped-def]
        waited = 0.0
        while not done():
            if self.runtime.controller_state().running:
                self.runtime.kill(exit_code=3)
            self.watchdog.tick()
            self.clock.advance(1)
            waited += 1
            assert waited < limit_s, "never happened"


def test_a_crash_loop_soon_after_updated_rolls_back_with_the_evidence() -> None:
    world = Guarded(within_s=600)
    world.updated_to_v1_1()

    world.crash_until(lambda: world.store.failed() is not None)

    assert world.runtime.running_version == "v1.0"
    failed = world.store.failed()
    assert failed is not None and failed.version == "v1.1"
    report = world.telemetry.terminal[-1]
    assert report.state.value == "FAILED"
    error = report.error or ""
    assert error.startswith("v1.1 crash-looped within 600 s of its update (")
    assert "exit codes 3, 3, 3" in error
    assert "last output: booting | FATAL: no serial port" in error
    assert error.endswith("; rolled back to v1.0")
    assert world.service.handle_request(world.request("v1.1")).outcome is Outcome.REFUSED


def test_off_by_default_the_watchdog_keeps_restarting_and_reports_crash_loop() -> None:
    world = Guarded(within_s=0)
    world.updated_to_v1_1()

    world.crash_until(lambda: any(v["controller_state"] == "CRASH_LOOP" for v in states(world)))
    world.crash_until(lambda: world.clock.mono > 1000 + 300)

    assert world.runtime.controller_state().version == "v1.1"
    assert world.store.failed() is None
    assert world.telemetry.terminal[-1].state.value == "UPDATED"


def test_a_crash_loop_after_the_window_is_only_restarted() -> None:
    world = Guarded(within_s=30)
    world.updated_to_v1_1()
    world.clock.advance(31)

    world.crash_until(lambda: any(v["controller_state"] == "CRASH_LOOP" for v in states(world)))

    assert world.runtime.controller_state().version == "v1.1"
    assert world.store.failed() is None


def test_a_new_version_never_inherits_the_old_ones_crash_streak() -> None:
    world = Guarded(within_s=600)
    world.runtime.behaviours["v1.0"] = Behaviour(output=("old",))
    # v1.0 crash-loops first (the streak is v1.0's) ...
    world.crash_until(lambda: world.watchdog.backoff.crash_looping)
    assert world.runtime.container is not None
    world.runtime.container.running = False
    # ... then v1.1 is assigned and passes its gate, and crashes once before a tick saw it.
    assert world.service.handle_request(world.request("v1.1")).outcome is Outcome.UPDATED
    world.runtime.kill(exit_code=3)
    world.watchdog.tick()

    assert world.store.failed() is None, "one crash is no crash loop"
    assert not world.watchdog.backoff.crash_looping
