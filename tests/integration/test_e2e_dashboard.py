"""End to end against the faithful ThingsBoard stand-in: what the stock dashboard shows in
each operator workflow (docs/thingsboard.md, "What you see in each workflow").

Every test asserts the dashboard's tab (Waiting / Updating / Updated / Failed, or none) from
the latest ``sw_state`` by ThingsBoard's own rules (server-stamped QUEUED/INITIATED, latest
value only for a ts that is not older), not only the list of messages. The fixtures and the
runner helpers are test_e2e_runner's.
"""

from __future__ import annotations

import time
from pathlib import Path

import docker
import pytest
import test_e2e_runner as base
from controller_repo import ControllerRepo
from gateway_under_test import SW_TITLE
from harness import in_ci, wait_until
from tb_clock import find_libfaketime

pytestmark = pytest.mark.timeout(240)

E2E = base.E2E
controller_repo = base.controller_repo
base_v1_image = base.base_v1_image
e2e = base.e2e

BROKEN = "v2.0-broken"  # builds, starts, exits with code 3 after about a second


def settle(e2e: base.E2E, requests_before: int, seconds: float = 3.0) -> None:
    """Barrier: the runner asked for its attributes again, then had time to act on them."""
    wait_until(lambda: e2e.standin.attribute_requests > requests_before, 60, "a request")
    time.sleep(seconds)


def test_assign_a_new_version_ends_in_updated(e2e: base.E2E) -> None:
    e2e.start_gateway()
    assert e2e.standin.dashboard().tab is None, "nothing assigned: in no tab"

    e2e.standin.assign(SW_TITLE, "v1.1")

    board = e2e.standin.wait_for_dashboard("Updated", 90)
    assert (board.progress, board.current_sw_version) == (100, "v1.1")
    e2e.wait_controller("v1.1")


def test_unassign_then_assign_again_retries_a_failed_version(e2e: base.E2E) -> None:
    e2e.start_gateway()
    e2e.standin.assign(SW_TITLE, BROKEN)
    board = e2e.standin.wait_for_dashboard("Failed", 90)
    assert board.current_sw_version == "v1.0"
    assert "rolled back to v1.0" in str(board.sw_error)
    assert e2e.standin.sw_states().count("DOWNLOADING") == 1

    e2e.standin.unassign()
    mark = e2e.standin.mark()
    e2e.standin.assign(SW_TITLE, BROKEN)  # the operator's retry: the whole cycle again

    e2e.wait_alive(e2e.runners[-1], lambda: "FAILED" in e2e.standin.sw_states(mark), 90)
    assert e2e.standin.sw_states(mark)[0] == "DOWNLOADING", "tried again, not refused"
    assert e2e.standin.wait_for_dashboard("Failed", 30).current_sw_version == "v1.0"
    e2e.wait_controller("v1.0")


def test_the_running_version_is_confirmed_once_per_assignment(e2e: base.E2E) -> None:
    e2e.start_gateway()
    e2e.standin.assign(SW_TITLE, "v1.0")
    assert e2e.standin.wait_for_dashboard("Updated", 60).current_sw_version == "v1.0"
    e2e.standin.unassign()
    assert e2e.standin.dashboard().tab == "Updated", "an unassignment changes no time series"

    e2e.standin.assign(SW_TITLE, "v1.0")

    e2e.standin.wait_for_dashboard("Updated", 60)
    assert e2e.standin.sw_states() == ["UPDATED", "UPDATED"]


def test_a_title_mismatch_fails_naming_both_titles(e2e: base.E2E) -> None:
    e2e.start_gateway()

    e2e.standin.assign("another-product", "v1.1")

    board = e2e.standin.wait_for_dashboard("Failed", 60)
    assert "'another-product'" in str(board.sw_error) and f"'{SW_TITLE}'" in str(board.sw_error)
    assert board.current_sw_version == "v1.0"
    e2e.wait_controller("v1.0")


def test_a_version_thingsboard_would_type_cast_is_refused(e2e: base.E2E) -> None:
    e2e.start_gateway()

    e2e.standin.assign(SW_TITLE, "1.10")

    board = e2e.standin.wait_for_dashboard("Failed", 60)
    assert "v1.10" in str(board.sw_error)
    assert board.current_sw_version == "v1.0"


@pytest.mark.parametrize("offset", ["-1h", "+1h"], ids=["an-hour-behind", "an-hour-ahead"])
def test_a_gateway_with_a_wrong_clock_ends_in_updated(
    tmp_path: Path,
    controller_repo: ControllerRepo,
    docker_client: docker.DockerClient,
    base_v1_image: str,
    offset: str,
) -> None:
    if find_libfaketime() is None:
        reason = "libfaketime is not installed (apt-get install faketime)"
        if in_ci():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    env = E2E(tmp_path, controller_repo, docker_client, base_v1_image, clock_offset=offset)
    try:
        env.start_gateway()
        env.standin.assign(SW_TITLE, "v1.1")

        board = env.standin.wait_for_dashboard("Updated", 120)
        assert board.current_sw_version == "v1.1"
        # Live reports went out flat, so the server stamped them: none carries the device's
        # (wrong) clock, which would have lost to the server-stamped INITIATED.
        states = env.standin.state_entries()
        assert [entry.values["sw_state"] for entry in states][-1] == "UPDATED"
        assert [entry.ts for entry in states] == [None] * len(states)
    finally:
        env.close()


def test_a_restart_while_queued_does_not_overwrite_queued(e2e: base.E2E) -> None:
    runner = e2e.start_gateway()
    e2e.standin.assign(SW_TITLE, "v1.1")
    e2e.standin.wait_for_dashboard("Updated", 90)
    runner.stop()

    e2e.standin.pacing = 600.0  # ThingsBoard's OTA queue has not reached this device yet
    e2e.standin.assign(SW_TITLE, "v1.0")
    assert e2e.standin.dashboard().tab == "Waiting"
    mark, requests = e2e.standin.mark(), e2e.standin.attribute_requests
    e2e.start_runner()  # asks for the attributes: the server answers the OLD assignment

    settle(e2e, requests)
    assert e2e.standin.sw_states(mark) == [], "the old assignment was answered already"
    assert e2e.standin.dashboard().tab == "Waiting"


def test_a_launch_with_nothing_assigned_lands_in_no_tab(e2e: base.E2E) -> None:
    e2e.start_gateway()
    board = e2e.standin.dashboard()
    assert (board.tab, board.current_sw_version) == (None, "v1.0")
    assert e2e.standin.sw_states() == []


def test_no_version_at_all_is_told_outside_sw_state(e2e: base.E2E) -> None:
    e2e.client.images.remove(f"{e2e.prefix}v1.0:latest")
    runner = e2e.start_runner(TEG_DEFAULT_CONTROLLER_VERSION="")

    e2e.wait_alive(
        runner, lambda: "NO_VERSION" in e2e.standin.values_of("controller_state"), 60
    )
    assert e2e.standin.dashboard().tab is None
    assert e2e.standin.sw_states() == []


def test_an_operators_rollback_is_told_and_sticks_after_a_restart(e2e: base.E2E) -> None:
    runner = e2e.start_gateway()
    # Two updates, so there is a known-good version to go back to (a launched default
    # version has not passed a health gate).
    e2e.standin.assign(SW_TITLE, "v1.1")
    e2e.standin.wait_for_dashboard("Updated", 90)
    e2e.standin.assign(SW_TITLE, "v1.0")
    assert e2e.standin.wait_for_dashboard("Updated", 90).target_sw_version == "v1.0"
    e2e.wait_controller("v1.0")
    runner.stop()

    done = e2e.run_cli("rollback")

    assert done.returncode == 0, done.stdout + done.stderr
    board = e2e.standin.wait_for_dashboard("Failed", 60)
    assert board.sw_error == "rolled back by the operator on the gateway"
    assert board.current_sw_version == "v1.1"
    e2e.wait_controller("v1.1")

    requests = e2e.standin.attribute_requests
    e2e.start_runner()  # reconnects and is told v1.0 again
    settle(e2e, requests)
    e2e.wait_controller("v1.1", timeout=5)
    assert e2e.standin.dashboard().tab == "Failed"


def test_the_gateways_own_fault_is_not_held_against_the_version(e2e: base.E2E) -> None:
    """An engine that refuses privileged containers (this machine's does) is the gateway's
    fault: FAILED saying what to set, and the same version runs once the setting is fixed."""
    runner = e2e.start_gateway()
    runner.stop()
    requests = e2e.standin.attribute_requests
    privileged = e2e.start_runner(TEG_CONTROLLER_PRIVILEGED="1")
    wait_until(lambda: e2e.standin.attribute_requests > requests, 60, "a request")

    e2e.standin.assign(SW_TITLE, "v1.1")

    board = e2e.standin.wait_for_dashboard("Failed", 90)
    assert "TEG_CONTROLLER_PRIVILEGED=0" in str(board.sw_error)
    time.sleep(5)  # not remembered, yet not retried in a loop: once per reconnect
    assert e2e.standin.sw_states().count("DOWNLOADING") == 1
    privileged.stop()
    mark = e2e.standin.mark()
    e2e.start_runner()  # privilege off again: the re-sent assignment is tried, not refused

    board = e2e.standin.wait_for_dashboard("Updated", 120)
    assert board.current_sw_version == "v1.1"
    assert "DOWNLOADING" in e2e.standin.sw_states(mark)


def test_an_unreachable_repository_is_not_held_against_the_version(e2e: base.E2E) -> None:
    runner = e2e.start_gateway()
    runner.stop()
    requests = e2e.standin.attribute_requests
    offline = e2e.start_runner(TEG_CONTROLLER_GIT_URL=str(e2e.tmp / "no-such-repository"))
    wait_until(lambda: e2e.standin.attribute_requests > requests, 60, "a request")

    e2e.standin.assign(SW_TITLE, "v1.1")

    board = e2e.standin.wait_for_dashboard("Failed", 90)
    assert board.current_sw_version == "v1.0"
    time.sleep(5)  # not remembered, yet not retried in a loop: once per reconnect
    assert e2e.standin.sw_states().count("DOWNLOADING") == 1
    offline.stop()
    e2e.start_runner()

    assert e2e.standin.wait_for_dashboard("Updated", 120).current_sw_version == "v1.1"


def test_an_unassignment_missed_while_offline_is_learnt_from_the_answer(e2e: base.E2E) -> None:
    runner = e2e.start_gateway()
    e2e.standin.assign(SW_TITLE, "v1.0")
    e2e.standin.wait_for_dashboard("Updated", 60)
    runner.stop()
    e2e.standin.unassign()  # pushed while the gateway is offline: it never hears it
    requests = e2e.standin.attribute_requests
    e2e.start_runner()
    settle(e2e, requests)  # answered {}: nothing is assigned now

    e2e.standin.assign(SW_TITLE, "v1.0")

    e2e.wait_alive(e2e.runners[-1], lambda: e2e.standin.sw_states().count("UPDATED") == 2, 60)
    assert e2e.standin.wait_for_dashboard("Updated", 30).current_sw_version == "v1.0"
