"""End to end: server-side RPC from the faithful ThingsBoard stand-in (tb_rpc), and the uptime
telemetry, through `teg-ota run` as a real process with the real engine and Mosquitto.

Each RPC method is called as ThingsBoard calls it (``v1/devices/me/rpc/request/{id}``, ids
from 0, answered on ``.../response/{id}`` within the 10 s timeout); a bad method and bad
params get an error reply and nothing runs. The fixtures and helpers are test_e2e_runner's.
"""

from __future__ import annotations

import json
import time

import pytest
import test_e2e_runner as base
from gateway_under_test import SW_TITLE
from harness import wait_until
from tb_standin import UPDATE_STATES

pytestmark = pytest.mark.timeout(240)

E2E = base.E2E
controller_repo = base.controller_repo
base_v1_image = base.base_v1_image
e2e = base.e2e

ACCEPTED = {"result": "accepted"}
UPTIME = "ms_since_controller_startup"
# A watchdog restart would wait a minute: a restart within seconds is not the watchdog's.
SLOW_BACKOFF = {"TEG_BACKOFF_INITIAL_S": "60", "TEG_BACKOFF_MAX_S": "60"}


def test_restart_controller_restarts_at_once_and_is_no_crash(e2e: base.E2E) -> None:
    runner = e2e.start_gateway(TEG_WATCHDOG_INTERVAL_S="1", **SLOW_BACKOFF)
    before = e2e.wait_controller("v1.0")
    time.sleep(2.5)  # let the runner's exit watcher subscribe to this container's events
    since = e2e.standin.mark()

    started = time.monotonic()
    reply = e2e.standin.rpc("restart_controller")

    assert reply == {**ACCEPTED, "message": "OK - Restarting Controller"}
    assert e2e.standin.rpc_calls[-1].request_id == 0, "ThingsBoard numbers requests from 0"

    def replaced() -> bool:
        current = e2e.controller()
        return bool(current and current["Id"] != before["Id"] and current["State"]["Running"])

    e2e.wait_alive(runner, replaced, 30)
    after = e2e.wait_controller("v1.0")
    assert time.monotonic() - started < 20, "no backoff wait (a watchdog restart waits 60 s)"
    assert base.docker_time(after["State"]["StartedAt"]) > base.docker_time(
        before["State"]["StartedAt"]
    )
    runner.wait_log(r"RPC request 0 \(restart_controller\): updated", 30)

    time.sleep(3)  # several watchdog ticks: none may count the restart as a crash
    assert base.identity(e2e.wait_controller("v1.0")) == base.identity(after)
    log = runner.log()
    assert "controller is not running; restarting" not in log
    assert "CRASH_LOOP" not in str(e2e.standin.values_of("controller_state", since))
    assert all(count == 0 for count in e2e.standin.values_of("controller_restarts", since))
    assert e2e.standin.sw_states(since) == [], "a restart is not an update"
    assert e2e.standin.protocol_errors == []


def test_ota_status_replies_what_status_json_prints(e2e: base.E2E) -> None:
    runner = e2e.start_gateway()
    attrs = e2e.wait_controller("v1.0")

    reply = e2e.standin.rpc("ota_status")

    cli = e2e.run_cli("status", "--json", timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert reply == json.loads(cli.stdout)
    assert reply["running"] is True and reply["version"] == "v1.0"
    assert reply["last_launched"] == "v1.0" and reply["update"] is None
    started_ms = base.docker_time(attrs["State"]["StartedAt"]) * 1000
    assert abs(reply["started_at_ms"] - started_ms) < 1000
    assert e2e.standin.rpc_calls[-1].replied_after < 5
    assert runner.alive


def test_rpc_during_an_update_status_answers_and_a_restart_queues_behind_it(
    e2e: base.E2E,
) -> None:
    runner = e2e.start_gateway()
    since = e2e.standin.mark()
    e2e.standin.assign(SW_TITLE, "v1.1")
    e2e.wait_state(runner, "DOWNLOADING", since)

    # Neither waits for the update in flight: status only reads, a restart is queued.
    assert e2e.standin.rpc("ota_status")["version"] in ("v1.0", "v1.1")
    assert e2e.standin.rpc("restart_controller")["result"] == "accepted"
    assert all(call.replied_after < 5 for call in e2e.standin.rpc_calls)

    e2e.wait_state(runner, "UPDATED", since, 120)
    # The restart ran once the update was done: it restarted the new version.
    runner.wait_log(r"RPC request 1 \(restart_controller\): updated, v1\.1 runs", 60)
    e2e.wait_controller("v1.1")
    assert e2e.standin.sw_states(since) == list(UPDATE_STATES)


def test_update_is_accepted_and_reported_through_sw_state(e2e: base.E2E) -> None:
    runner = e2e.start_gateway()
    since = e2e.standin.mark()

    assert e2e.standin.rpc("update", {"version": "v1.1"}) == ACCEPTED

    updated = e2e.wait_state(runner, "UPDATED", since, 120)
    assert e2e.standin.sw_states(since) == list(UPDATE_STATES)
    assert updated.values["current_sw_version"] == "v1.1"
    e2e.wait_controller("v1.1")


def test_update_with_force_retries_a_failed_version(e2e: base.E2E) -> None:
    runner = e2e.start_gateway()
    since = e2e.standin.mark()
    assert e2e.standin.rpc("update", {"version": "v2.0-broken"}) == ACCEPTED
    e2e.wait_state(runner, "FAILED", since, 120)
    e2e.wait_controller("v1.0")

    again = e2e.standin.mark()
    assert e2e.standin.rpc("update", {"version": "v2.0-broken"}) == ACCEPTED
    runner.wait_log(r"RPC request 1 \(update\): refused", 60)  # remembered: not retried
    assert "DOWNLOADING" not in e2e.standin.sw_states(again)

    forced = e2e.standin.mark()
    assert e2e.standin.rpc("update", {"version": "v2.0-broken", "force": True}) == ACCEPTED
    e2e.wait_state(runner, "FAILED", forced, 120)
    assert e2e.standin.sw_states(forced)[0] == "DOWNLOADING", "force: tried again"
    e2e.wait_controller("v1.0")


def test_rollback_is_accepted_and_reported_through_sw_state(e2e: base.E2E) -> None:
    # The prebuilt v1.0 is only launched; the next start finds it running and records it
    # as known good, so the rollback after v1.1 has somewhere to go.
    assert e2e.start_gateway().terminate() == 0
    runner = e2e.start_gateway()
    since = e2e.standin.mark()
    e2e.standin.assign(SW_TITLE, "v1.1")
    e2e.wait_state(runner, "UPDATED", since, 120)
    e2e.wait_controller("v1.1")
    since = e2e.standin.mark()

    assert e2e.standin.rpc("rollback") == ACCEPTED

    failed = e2e.wait_state(runner, "FAILED", since, 120)
    assert "rolled back by the operator" in str(failed.values["sw_error"])
    assert failed.values["current_sw_version"] == "v1.0"
    e2e.wait_controller("v1.0")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"method": "reboot", "params": {}}, "unknown method 'reboot'"),
        ({"method": "update", "params": {}}, '"version" is missing'),
        ({"method": "update", "params": {"version": "v1..1"}}, "invalid version"),
        ({"method": "update", "params": {"version": "v1.1", "force": "yes"}}, '"force"'),
        ({"method": "update", "params": {"version": "v1.1", "now": 1}}, "unknown params"),
        ({"method": "restart_controller", "params": {"hard": True}}, "takes no params"),
        ({"method": "rollback", "params": [1]}, "takes no params"),
        ("not json at all", "not JSON"),
        ({"params": {}}, '"method" must be a string'),
    ],
)
def test_bad_requests_get_an_error_reply_and_nothing_runs(
    e2e: base.E2E, payload: object, reason: str
) -> None:
    runner = e2e.start_gateway()
    before = base.identity(e2e.wait_controller("v1.0"))
    since = e2e.standin.mark()

    raw = payload if isinstance(payload, str) else json.dumps(payload)
    reply = e2e.standin.rpc_raw(raw)

    assert set(reply) == {"error"} and reason in reply["error"], reply
    # Barrier: a good call after the bad one is answered, so the bad one was handled.
    assert e2e.standin.rpc("ota_status")["running"] is True
    time.sleep(1)
    assert e2e.standin.sw_states(since) == []
    assert base.identity(e2e.wait_controller("v1.0")) == before, "nothing ran"
    assert "restarting controller" not in runner.log()
    assert e2e.standin.protocol_errors == []


def test_uptime_telemetry_counts_from_the_container_start(e2e: base.E2E) -> None:
    since = e2e.standin.mark()
    runner = e2e.start_gateway(TEG_UPTIME_TELEMETRY_S="1")
    attrs = e2e.wait_controller("v1.0")
    started = base.docker_time(attrs["State"]["StartedAt"])

    e2e.wait_alive(runner, lambda: len(e2e.standin.values_of(UPTIME, since)) >= 3, 30)
    entries = [t for t in e2e.standin.telemetry[since:] if UPTIME in t.values]
    for entry in entries:
        value = entry.values[UPTIME]
        assert isinstance(value, int) and value >= 0
        # Sent flat: ThingsBoard stamps it on arrival, with a clock close to ours.
        expected_ms = (entry.server_ts / 1000 - started) * 1000
        assert abs(value - expected_ms) < 3000, (value, expected_ms)
    values = [entry.values[UPTIME] for entry in entries]
    assert values == sorted(values), "it grows while the controller runs"
    mean_gap = (entries[-1].received - entries[0].received) / (len(entries) - 1)
    assert 0.5 < mean_gap < 3, f"every second: {[t.received for t in entries]}"

    # After a restart it counts from the new container's start.
    assert e2e.standin.rpc("restart_controller")["result"] == "accepted"
    wait_until(lambda: (e2e.controller() or {}).get("Id") not in (None, attrs["Id"]), 30, "restart")
    mark = e2e.standin.mark()
    e2e.wait_alive(runner, lambda: len(e2e.standin.values_of(UPTIME, mark)) >= 2, 30)
    assert e2e.standin.values_of(UPTIME, mark)[-1] < values[-1] + 3000
    assert min(e2e.standin.values_of(UPTIME, mark)) < 5000
