"""End to end, the loop guard (issue 15, "Attempt limit"): a version whose health gate is
interrupted by a power cut every time (a version that reboots the Pi) is failed at the
``TEG_MAX_INTERRUPTED_ATTEMPTS``-th interruption in a row, instead of being retried on
every reconnect for ever.

The power cut is the runner SIGKILLed in the health grace and the controller container
SIGKILLed with it (nothing restarts it: the runner is gone and its restart policy is
``no``). The fixtures and helpers are test_e2e_runner's.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import test_e2e_runner as base
from gateway_under_test import SW_TITLE
from harness import wait_until

pytestmark = pytest.mark.timeout(420)

controller_repo = base.controller_repo
base_v1_image = base.base_v1_image
e2e = base.e2e

FAILED_FILE = "failed_controller_version.json"
INTERRUPTED_FILE = "interrupted_attempts.json"
SETTINGS = {"TEG_HEALTH_GRACE_S": "60", "TEG_MAX_INTERRUPTED_ATTEMPTS": "2"}
LOOP = "interrupted 2 times during its swap: possible reboot loop"


def record(env: base.E2E, name: str) -> dict[str, Any] | None:
    try:
        loaded: dict[str, Any] = json.loads((env.data / name).read_text())
    except FileNotFoundError:
        return None
    return loaded


def power_cut_in_the_health_grace(
    env: base.E2E, runner: base.Runner, since: int, attempt: int
) -> None:
    """Once attempt ``attempt`` (its UPDATING counted from ``since``) is on probation: the
    runner and the controller die."""
    env.wait_alive(runner, lambda: env.standin.sw_states(since).count("UPDATING") >= attempt, 180)
    wait_until(
        lambda: (env.journal() or {}).get("phase") == "HEALTH_CHECK", 30, "phase HEALTH_CHECK"
    )
    new = env.wait_controller("v1.1")
    runner.kill()
    env.client.api.kill(new["Id"])
    wait_until(
        lambda: not (env.controller() or {"State": {"Running": False}})["State"]["Running"],
        30,
        "the controller stopped",
    )


def test_the_second_interrupted_attempt_fails_the_version(e2e: base.E2E) -> None:
    standin = e2e.standin
    first = e2e.start_gateway(**SETTINGS)
    since = standin.mark()

    # Attempt 1: cut in its grace. The recovery rolls back without blame and the re-sent
    # assignment starts attempt 2, which is cut in its grace as well.
    standin.assign(SW_TITLE, "v1.1")
    power_cut_in_the_health_grace(e2e, first, since, 1)
    assert record(e2e, INTERRUPTED_FILE) is None, "counted by recovery, not before"

    second = e2e.start_runner(**SETTINGS)
    rolled_back = e2e.wait_state(second, "FAILED", since, timeout=90)
    assert "v1.1" in str(rolled_back.values["sw_error"])
    assert LOOP not in str(rolled_back.values["sw_error"])
    assert record(e2e, FAILED_FILE) is None, "one interruption is not held against v1.1"
    assert record(e2e, INTERRUPTED_FILE) == {"version": "v1.1", "count": 1}
    decision = second.wait_log(r"OTA request for 'v1\.1': (\w+)", 60)[1]
    assert decision == "StartUpdate", decision
    power_cut_in_the_health_grace(e2e, second, since, 2)

    # Attempt 2's recovery: the limit. v1.0 runs again, FAILED says why, v1.1 is remembered.
    third = e2e.start_runner(**SETTINGS)
    e2e.wait_alive(third, lambda: standin.sw_states(since).count("FAILED") >= 2, 90)
    failed = [entry for entry in standin.state_entries(since) if entry.sw_state == "FAILED"][1]
    error = str(failed.values["sw_error"])
    assert LOOP in error and "rolled back to v1.0" in error, error
    assert failed.values["current_sw_version"] == "v1.0"
    e2e.wait_controller("v1.0")
    remembered = record(e2e, FAILED_FILE)
    assert remembered is not None and remembered["version"] == "v1.1"
    assert LOOP in remembered["error"]
    assert record(e2e, INTERRUPTED_FILE) is None, "forgotten: the failure memory holds it"
    assert e2e.journal() is None
    assert standin.sw_states(since)[:10] == [
        "DOWNLOADING", "DOWNLOADED", "VERIFIED", "UPDATING", "FAILED",
        "DOWNLOADING", "DOWNLOADED", "VERIFIED", "UPDATING", "FAILED",
    ]  # fmt: skip

    # ThingsBoard re-sends the assignment on the reconnect: not retried.
    third.wait_log(r"not retrying v1\.1", 60)
    assert standin.sw_states(since).count("DOWNLOADING") == 2, "no third attempt"
    assert standin.dashboard().tab == "Failed", standin.dashboard().describe()
    e2e.wait_controller("v1.0")
    assert third.alive
