"""The ThingsBoard stand-in behaves like the real server, including what hurts devices.

Each test runs a real Mosquitto (``mosquitto`` fixture), the stand-in on it and a plain device:
harness.MqttRecorder (gmqtt) or raw_mqtt.RawMqttDevice (a bare socket, to see exactly when a
session is closed). The facts are those of /work/shared/reference/thingsboard-ota.md ("What the
server does around an assignment", "Behaviour that bites devices").
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from gateway_under_test import GatewayUnderTest
from harness import MosquittoBroker, MqttRecorder, in_ci
from raw_mqtt import RawMqttDevice
from tb_clock import Clock, faketime_env, find_libfaketime
from tb_dashboard import PROGRESS_OF_STATE, dashboard_of, progress_of, tab_of
from tb_device_api import ATTRIBUTES_TOPIC, REQUEST_PREFIX, RESPONSE_PREFIX, TELEMETRY_TOPIC
from tb_ota import UNASSIGN_KEYS
from tb_standin import ThingsBoardStandIn
from tb_timeseries import TimeSeries

pytestmark = pytest.mark.timeout(120)

SW = "teg-controller"
TOKEN = "device-token"
HOUR_MS = 3_600_000
_ids = itertools.count(100)

StandInFactory = Callable[..., ThingsBoardStandIn]
DeviceFactory = Callable[..., MqttRecorder]


@pytest.fixture
def make_standin(mosquitto: MosquittoBroker) -> Iterator[StandInFactory]:
    made: list[ThingsBoardStandIn] = []

    def make(**kwargs: Any) -> ThingsBoardStandIn:
        kwargs.setdefault("persistent", False)
        kwargs.setdefault("gate", False)
        standin = ThingsBoardStandIn(mosquitto.host, mosquitto.port, **kwargs)
        made.append(standin)
        return standin.start()

    yield make
    for standin in made:
        standin.close()
    assert [e for s in made for e in s.listener_errors] == []


@pytest.fixture
def make_device(mqtt_recorder_factory: Callable[..., MqttRecorder]) -> DeviceFactory:
    """A gmqtt device of a stand-in (through its gate if it has one)."""

    def make(standin: ThingsBoardStandIn, username: str = TOKEN) -> MqttRecorder:
        return mqtt_recorder_factory(
            standin.device_host,
            standin.device_port,
            topics=(ATTRIBUTES_TOPIC, RESPONSE_PREFIX + "+"),
            username=username,
        )

    return make


def ask(device: MqttRecorder, keys: Any = "sw_title,sw_version", rid: str = "") -> Any:
    """An attribute request; its answer."""
    rid = rid or str(next(_ids))
    device.publish(REQUEST_PREFIX + rid, {"sharedKeys": keys})
    return device.wait_for_message(RESPONSE_PREFIX + rid, 10).json()


def pushes(device: MqttRecorder, count: int) -> list[Any]:
    device.wait_for(lambda ms: sum(m.topic == ATTRIBUTES_TOPIC for m in ms) >= count, 10)
    return [m.json() for m in device.on(ATTRIBUTES_TOPIC)]


def now_ms() -> int:
    return int(time.time() * 1000)


# --- assignment --------------------------------------------------------------------------------


def test_assign_queues_then_initiates_then_pushes_values_and_deletions(
    make_standin: StandInFactory, make_device: DeviceFactory
) -> None:
    standin = make_standin(pacing=1.0, push_order="values-first")
    device = make_device(standin)
    before = now_ms()
    assert standin.assign(SW, "v1.1", size=1234, checksum="ab" * 32, checksum_algorithm="SHA256")
    after = now_ms()

    queued = standin.series.latest("sw_state")
    assert queued is not None and queued.value == "QUEUED" and queued.source == "server"
    assert before <= queued.ts <= after, "stamped with the stand-in's clock"
    expected = {"target_sw_title": SW, "target_sw_version": "v1.1", "target_sw_ts": queued.ts}
    for key, value in expected.items():
        point = standin.series.latest(key)
        assert point is not None and (point.value, point.ts) == (value, queued.ts), key
    assert standin.latest("target_sw_tag") is None, "written only for a package with a tag"
    board = standin.dashboard()
    assert (board.tab, board.progress, board.target_sw_version) == ("Waiting", 0, "v1.1")
    assert device.on(ATTRIBUTES_TOPIC) == [], "nothing is pushed while QUEUED"

    values, deleted = pushes(device, 2)
    assert values == {
        "sw_title": SW,
        "sw_version": "v1.1",
        "sw_size": 1234,
        "sw_checksum_algorithm": "SHA256",
        "sw_checksum": "ab" * 32,
    }
    assert deleted == {"deleted": ["sw_tag", "sw_url"]}, "a stored package: sw_url deleted"
    initiated = standin.series.latest("sw_state")
    assert initiated is not None and initiated.value == "INITIATED"
    assert initiated.ts >= queued.ts + 950, "after the pacing delay, with its own stamp"
    assert initiated.ts <= standin.pushes[0].ts, "INITIATED is written before the push"
    assert [p.value for p in standin.series.history("sw_state")] == ["QUEUED", "INITIATED"]
    assert (standin.dashboard().tab, standin.dashboard().progress) == ("Updating", 5)
    assert standin.sw_states() == [], "sw_states() lists what the device sent"
    assert standin.protocol_errors == []


def test_url_package_with_a_tag(make_standin: StandInFactory, make_device: DeviceFactory) -> None:
    standin = make_standin(pacing=0, push_order="deleted-first")
    device = make_device(standin)
    url, tag = "https://example.com/controller-v2.tar", f"{SW} v2.0"
    standin.assign(SW, "v2.0", url=url, tag=tag)

    deleted, values = pushes(device, 2)
    assert deleted == {"deleted": ["sw_size", "sw_checksum_algorithm", "sw_checksum"]}
    assert values == {"sw_title": SW, "sw_version": "v2.0", "sw_tag": tag, "sw_url": url}
    assert standin.latest("target_sw_tag") == tag
    answer = ask(device, "sw_title,sw_version,sw_size,sw_url,sw_tag")
    assert answer == {
        "shared": {"sw_title": SW, "sw_version": "v2.0", "sw_url": url, "sw_tag": tag}
    }


def test_push_order_is_either_and_reproducible_with_a_seed(
    make_standin: StandInFactory, make_device: DeviceFactory
) -> None:
    def orders(standin: ThingsBoardStandIn) -> list[tuple[str, ...]]:
        for n in range(12):
            standin.assign(SW, f"v1.{n}")
            standin.wait_idle(10)
        kinds = [p.kind for p in standin.pushes]
        return [tuple(kinds[i : i + 2]) for i in range(0, len(kinds), 2)]

    first = make_standin(pacing=0, seed=20260702)
    device = make_device(first)
    seen = orders(first)
    assert set(seen) == {("values", "deleted"), ("deleted", "values")}
    received = pushes(device, 24)
    assert ["deleted" in p for p in received] == [kind == "deleted" for o in seen for kind in o]
    assert orders(make_standin(pacing=0, seed=20260702)) == seen, "same seed, same orders"
    assert f"seed {first.seed}" in first.timeline()


def test_old_attributes_while_queued(
    make_standin: StandInFactory, make_device: DeviceFactory
) -> None:
    standin = make_standin(pacing=0)
    device = make_device(standin)
    assert ask(device) == {}, "nothing assigned: an empty answer"
    standin.assign(SW, "v1.0")
    standin.wait_idle(10)
    assert ask(device) == {"shared": {"sw_title": SW, "sw_version": "v1.0"}}

    standin.pacing = 2.0
    standin.assign(SW, "v1.1")
    assert ask(device) == {"shared": {"sw_title": SW, "sw_version": "v1.0"}}, "the OLD one"
    assert standin.latest("target_sw_version") == "v1.1"
    assert standin.dashboard().tab == "Waiting"
    standin.wait_idle(10)
    assert ask(device) == {"shared": {"sw_title": SW, "sw_version": "v1.1"}}


def test_same_package_again_does_nothing_until_unassigned(
    make_standin: StandInFactory, make_device: DeviceFactory
) -> None:
    standin = make_standin(pacing=0)
    device = make_device(standin)
    standin.assign(SW, "v1.0")
    standin.wait_idle(10)
    pushes(device, 2)
    points = len(standin.series.history())

    assert standin.assign(SW, "v1.0") is False
    time.sleep(0.5)
    ask(device)  # a barrier: anything pushed before its answer has arrived
    assert len(standin.series.history()) == points, "no QUEUED, no INITIATED"
    assert len(device.on(ATTRIBUTES_TOPIC)) == 2, "no push"

    assert standin.unassign() is True
    assert standin.assign(SW, "v1.0") is True, "unassign then assign: the operator's retry"
    standin.wait_idle(10)
    assert len(pushes(device, 5)) == 5
    states = [p.value for p in standin.series.history("sw_state")]
    assert states == ["QUEUED", "INITIATED", "QUEUED", "INITIATED"]


def test_a_change_while_queued_supersedes_the_queued_assignment(
    make_standin: StandInFactory, make_device: DeviceFactory
) -> None:
    standin = make_standin(pacing=1.0, push_order="values-first")
    device = make_device(standin)
    standin.assign(SW, "v1.1")
    standin.assign(SW, "v1.2")
    standin.wait_idle(10)
    assert pushes(device, 2)[0] == {"sw_title": SW, "sw_version": "v1.2"}
    states = [p.value for p in standin.series.history("sw_state")]
    assert states == ["QUEUED", "QUEUED", "INITIATED"], "v1.1 is never processed"

    standin.assign(SW, "v1.3")
    standin.unassign()
    standin.wait_idle(10)
    assert pushes(device, 3)[2] == {"deleted": list(UNASSIGN_KEYS)}
    assert standin.latest("sw_state") == "QUEUED", "v1.3 stays QUEUED for good"
    assert ask(device) == {}
    assert len(device.on(ATTRIBUTES_TOPIC)) == 3


def test_unassign_deletes_the_nine_keys_and_changes_no_time_series(
    make_standin: StandInFactory, make_device: DeviceFactory
) -> None:
    standin = make_standin(pacing=0)
    device = make_device(standin)
    standin.assign(SW, "v1.1", size=10, checksum="00ff")
    standin.wait_idle(10)
    pushes(device, 2)
    latest, points = standin.series.latest_values(), len(standin.series.history())
    device.clear()

    assert standin.unassign() is True
    assert device.wait_for_message(ATTRIBUTES_TOPIC, 10).json() == {"deleted": list(UNASSIGN_KEYS)}
    assert ask(device, ",".join(UNASSIGN_KEYS)) == {}, "every sw_* attribute is gone"
    assert len(device.on(ATTRIBUTES_TOPIC)) == 1, "exactly one push"
    assert UNASSIGN_KEYS == (
        "sw_title",
        "sw_version",
        "sw_ts",
        "sw_state",
        "sw_size",
        "sw_checksum",
        "sw_checksum_algorithm",
        "sw_url",
        "sw_tag",
    )
    assert standin.series.latest_values() == latest
    assert len(standin.series.history()) == points
    assert standin.dashboard().tab == "Updating", "sw_state keeps its last value: INITIATED"
    assert standin.unassign() is False, "nothing assigned: nothing happens"


# --- time series -------------------------------------------------------------------------------


def test_an_older_device_ts_does_not_replace_an_equal_one_does(
    make_standin: StandInFactory, make_device: DeviceFactory
) -> None:
    standin = make_standin(pacing=0)
    device = make_device(standin)
    standin.assign(SW, "v1.1")
    standin.wait_idle(10)
    initiated = standin.series.latest("sw_state")
    assert initiated is not None

    # A device an hour behind (a Pi after a power cut, before NTP) reports UPDATED.
    behind = {"sw_state": "UPDATED", "current_sw_version": "v1.1"}
    device.publish(TELEMETRY_TOPIC, {"ts": initiated.ts - HOUR_MS, "values": behind})
    standin.wait_for_state("UPDATED", 10)
    assert standin.latest("sw_state") == "INITIATED", "UPDATED never becomes the latest"
    assert standin.wait_for_dashboard("Updating", 1).current_sw_version == "v1.1"
    device.publish(TELEMETRY_TOPIC, {"ts": initiated.ts - 1, "values": {"sw_state": "FAILED"}})
    standin.wait_for_state("FAILED", 10)
    assert standin.latest("sw_state") == "INITIATED", "1 ms older is older"

    device.publish(TELEMETRY_TOPIC, {"ts": initiated.ts, "values": {"sw_state": "DOWNLOADING"}})
    standin.wait_for_state("DOWNLOADING", 10)
    assert standin.latest("sw_state") == "DOWNLOADING", "an equal ts replaces"
    assert standin.sw_states() == ["UPDATED", "FAILED", "DOWNLOADING"], "all kept in history"
    history = [(p.value, p.source) for p in standin.series.history("sw_state")]
    assert history == [
        ("QUEUED", "server"),
        ("INITIATED", "server"),
        ("UPDATED", "device"),
        ("FAILED", "device"),
        ("DOWNLOADING", "device"),
    ]


def test_flat_telemetry_is_stamped_on_arrival_with_the_standins_clock(
    make_standin: StandInFactory, make_device: DeviceFactory
) -> None:
    standin = make_standin(pacing=0, clock=Clock(offset_ms=HOUR_MS))  # the server is ahead
    device = make_device(standin)
    standin.assign(SW, "v1.1")
    standin.wait_idle(10)

    before = now_ms() + HOUR_MS
    device.publish(TELEMETRY_TOPIC, {"sw_state": "DOWNLOADING"})
    entry = standin.wait_for_state("DOWNLOADING", 10)
    after = now_ms() + HOUR_MS
    assert entry.ts is None and before <= entry.server_ts <= after
    assert standin.latest("sw_state") == "DOWNLOADING", "flat: the server's own clock wins"

    # A device with a right clock that stamps its own ts loses to the server's hour ahead.
    device.publish(TELEMETRY_TOPIC, {"ts": now_ms(), "values": {"sw_state": "UPDATED"}})
    assert standin.wait_for_state("UPDATED", 10).server_ts < entry.server_ts
    assert standin.wait_for_dashboard("Updating", 1).sw_state == "DOWNLOADING"


def test_numeric_strings_are_stored_as_numbers(
    make_standin: StandInFactory, make_device: DeviceFactory
) -> None:
    standin = make_standin()
    device = make_device(standin)
    sent = {
        "current_sw_version": "1.10",
        "two": "2",
        "dotted": "1.2.3",
        "tag": "v1.0",
        "negative": "-5",
        "half": ".5",
        "exponent": "1e3",
        "huge": "99999999999999999999",
        "json_double": 1.0,
        "json_exponent": 1e3,
        "flag": True,
        "nothing": None,
        "object": {"a": "1"},
    }
    device.publish(TELEMETRY_TOPIC, sent)
    entry = standin.wait_for_value("two", "2", 10)
    assert entry.values["current_sw_version"] == "1.10", "as sent"
    stored = dict(entry.stored or {})
    assert stored == {
        "current_sw_version": 1.1,
        "two": 2,
        "dotted": "1.2.3",
        "tag": "v1.0",
        "negative": -5,
        "half": 0.5,
        "exponent": "1e3",
        "huge": "99999999999999999999",
        "json_double": 1.0,
        "json_exponent": 1000,
        "flag": True,
        "object": {"a": "1"},
    }
    assert type(stored["two"]) is int and type(stored["json_double"]) is float
    assert standin.dashboard().current_sw_version == 1.1, "the dashboard shows 1.1"

    device.publish(TELEMETRY_TOPIC, [{"ts": "1700000000000", "values": {"n": "7"}}, {"m": "8"}])
    assert standin.wait_for_value("m", "8", 10).ts is None
    assert standin.series.latest("n") is not None and standin.series.latest("n").ts == 1700000000000
    assert standin.protocol_errors == []


# --- attribute requests --------------------------------------------------------------------------


def test_shared_keys_are_split_on_commas_and_not_trimmed(
    make_standin: StandInFactory, make_device: DeviceFactory
) -> None:
    standin = make_standin(pacing=0)
    device = make_device(standin)
    standin.assign(SW, "v1.1")
    standin.wait_idle(10)

    assert ask(device, "sw_title, sw_version") == {"shared": {"sw_title": SW}}
    assert ask(device, "sw_version,") == {"shared": {"sw_version": "v1.1"}}
    assert standin.protocol_errors == []
    # Gson reads a one-element list as its string: answered, but not the documented form.
    assert ask(device, ["sw_version"]) == {"shared": {"sw_version": "v1.1"}}
    assert standin.protocol_errors == [
        "sharedKeys must be one comma-separated string, got ['sw_version']"
    ]
    device.publish(REQUEST_PREFIX + "007", {"sharedKeys": "sw_title"})
    assert device.wait_for_message(RESPONSE_PREFIX + "7", 10).json() == {"shared": {"sw_title": SW}}


# --- sessions: closed where the server closes them (through the gate) ----------------------------


@pytest.fixture
def gated(make_standin: StandInFactory) -> ThingsBoardStandIn:
    return make_standin(gate=True, pacing=0)


def raw_device(
    standin: ThingsBoardStandIn, username: str | None = TOKEN, client_id: str | None = None
) -> RawMqttDevice:
    device = RawMqttDevice(standin.device_host, standin.device_port, username, client_id)
    assert device.connect() == 0
    return device


def assert_closed_for(standin: ThingsBoardStandIn, device: RawMqttDevice, reason: str) -> None:
    assert device.wait_closed(5), "the session was not closed"
    closed = standin.closed_sessions[-1]
    assert reason in closed.reason, closed
    assert closed.username == device.username and closed.client_id == device.client_id
    assert any(reason in error for error in standin.protocol_errors), standin.protocol_errors


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (TELEMETRY_TOPIC, b'{"sw_state": ', "not JSON"),
        (TELEMETRY_TOPIC, b"", "can't parse value"),
        (TELEMETRY_TOPIC, b'"UPDATED"', "can't parse value"),
        (TELEMETRY_TOPIC, b"[1]", "can't parse value"),
        (TELEMETRY_TOPIC, b'{"ts": 1, "values": [1]}', "values is not an object"),
        (TELEMETRY_TOPIC, b'{"ts": "soon", "values": {}}', "ts is not a number"),
        (ATTRIBUTES_TOPIC, b"not json", "not JSON"),
        (REQUEST_PREFIX + "1", b"{", "not JSON"),
        (REQUEST_PREFIX + "1", b'{"sharedKeys": ["sw_title", "sw_version"]}', "getAsString"),
    ],
)
def test_invalid_json_closes_the_session_and_is_not_delivered(
    gated: ThingsBoardStandIn, topic: str, payload: bytes, reason: str
) -> None:
    device = raw_device(gated)
    device.publish(TELEMETRY_TOPIC, {"before": 1})
    gated.wait_for_value("before", 1, 10)
    device.publish(topic, payload)
    assert_closed_for(gated, device, reason)
    assert len(gated.telemetry) == 1 and gated.requests == [], "the bad publish was dropped"


@pytest.mark.parametrize("rid", ["abc", "1.0", "", "2147483648", "1/2", " 1", "0x10"])
def test_a_request_id_that_is_not_a_decimal_integer_closes_the_session(
    gated: ThingsBoardStandIn, rid: str
) -> None:
    device = raw_device(gated)
    device.subscribe(RESPONSE_PREFIX + "+")
    device.publish(REQUEST_PREFIX + "2147483647", {"sharedKeys": "sw_title"})
    assert device.wait_message(RESPONSE_PREFIX + "2147483647") == b"{}", "the largest int"
    device.publish(REQUEST_PREFIX + rid, {"sharedKeys": "sw_title"})
    assert_closed_for(gated, device, "not a decimal integer")


def test_the_size_limit_counts_the_remaining_length(gated: ThingsBoardStandIn) -> None:
    def payload(remaining: int) -> bytes:
        # PUBLISH QoS 1: 2 + len(topic) + 2 (packet id) + payload = remaining length
        size = remaining - 4 - len(TELEMETRY_TOPIC)
        return b'{"k":"' + b"x" * (size - 8) + b'"}'

    device = raw_device(gated)
    device.publish(TELEMETRY_TOPIC, payload(65536))
    assert gated.wait_for_telemetry(lambda t: "k" in t.values, 10)
    assert device.alive(), "exactly 65536 is allowed"
    device.publish(TELEMETRY_TOPIC, payload(65537))
    assert_closed_for(gated, device, "remaining length 65537 > 65536")
    assert len(gated.telemetry) == 1


def test_a_second_session_with_the_same_token_evicts_the_first(
    gated: ThingsBoardStandIn,
) -> None:
    first = raw_device(gated, client_id="gateway-a")
    other = raw_device(gated, username="another-device")
    second = raw_device(gated, client_id="gateway-b")
    assert first.wait_closed(5), "the first session was evicted"
    assert second.alive() and other.alive(), "the new session and other devices stay"
    (evicted,) = gated.closed_sessions
    assert (evicted.username, evicted.client_id) == (TOKEN, "gateway-a")
    assert "evicted by session" in evicted.reason
    assert gated.protocol_errors == [], "an eviction is not the device's fault"
    assert [s[1:] for s in gated.gate.sessions()] == [  # type: ignore[union-attr]
        ("another-device", other.client_id),
        (TOKEN, "gateway-b"),
    ]


def test_a_gmqtt_device_reconnects_after_its_session_is_closed(
    gated: ThingsBoardStandIn, make_device: DeviceFactory
) -> None:
    device = make_device(gated)
    gated.assign(SW, "v1.1")
    assert pushes(device, 2)
    device.publish(TELEMETRY_TOPIC, b"not json", qos=0)  # QoS 1 would be re-sent forever
    gated.gate.wait_for_closed(1, 10)  # type: ignore[union-attr]
    wait = time.monotonic() + 15
    while device.connections < 2 and time.monotonic() < wait:
        time.sleep(0.1)
    assert device.connections == 2
    assert ask(device) == {"shared": {"sw_title": SW, "sw_version": "v1.1"}}, (
        "no re-send after a reconnect: the device must ask"
    )


def test_retain_is_ignored_and_noted(gated: ThingsBoardStandIn, mosquitto: MosquittoBroker) -> None:
    device = raw_device(gated)
    device.publish(TELEMETRY_TOPIC, {"sw_state": "DOWNLOADING"}, retain=True)
    gated.wait_for_state("DOWNLOADING", 10)
    assert device.alive(), "not a reason to close"
    assert gated.protocol_errors == [
        f"retained publish on {TELEMETRY_TOPIC} (the server ignores retain)"
    ]
    late = RawMqttDevice(mosquitto.host, mosquitto.port, "late-subscriber")
    assert late.connect() == 0
    late.subscribe(TELEMETRY_TOPIC)
    assert late.alive() and late.messages == [], "the broker kept nothing retained"


def test_an_unknown_token_gets_connack_5(make_standin: StandInFactory) -> None:
    standin = make_standin(gate=True, tokens=[TOKEN])
    refused = RawMqttDevice(standin.device_host, standin.device_port, "wrong-token")
    assert refused.connect() == 5
    assert refused.wait_closed(5)
    assert raw_device(standin).alive()


# --- the dashboard -------------------------------------------------------------------------------


def test_dashboard_tabs_and_progress_follow_the_latest_state() -> None:
    tabs = {
        "QUEUED": "Waiting",
        "INITIATED": "Updating",
        "DOWNLOADING": "Updating",
        "DOWNLOADED": "Updating",
        "VERIFIED": "Updating",
        "UPDATING": "Updating",
        "UPDATED": "Updated",
        "FAILED": "Failed",
    }
    assert {state: tab_of(state) for state in tabs} == tabs
    assert PROGRESS_OF_STATE == {
        "QUEUED": 0,
        "INITIATED": 5,
        "DOWNLOADING": 10,
        "DOWNLOADED": 55,
        "VERIFIED": 60,
        "UPDATING": 70,
        "FAILED": 99,
        "UPDATED": 100,
    }
    for other in ("IDLE", "updated", "", None, 3):
        assert tab_of(other) is None and progress_of(other) is None
    series = TimeSeries()
    assert dashboard_of(series).tab is None, "no sw_state: in no tab"
    series.save(2000, {"sw_state": "UPDATED"}, "device")
    series.save(1000, {"sw_state": "FAILED", "sw_error": "late"}, "device")
    board = dashboard_of(series)
    assert (board.tab, board.progress, board.sw_state_ts, board.sw_error) == (
        "Updated",
        100,
        2000,
        "late",
    )


def test_wait_for_dashboard_through_an_update(
    make_standin: StandInFactory, make_device: DeviceFactory
) -> None:
    standin = make_standin(pacing=0.5)
    device = make_device(standin)
    assert standin.dashboard().tab is None
    standin.assign(SW, "v1.1")
    assert standin.wait_for_dashboard("Waiting", 1).progress == 0
    assert standin.wait_for_dashboard("Updating", 5).progress == 5
    for state, progress in (("DOWNLOADING", 10), ("VERIFIED", 60), ("UPDATING", 70)):
        device.publish(TELEMETRY_TOPIC, {"sw_state": state})
        assert standin.wait_for_telemetry(lambda t, s=state: t.sw_state == s, 10)
        assert standin.dashboard().progress == progress
    device.publish(TELEMETRY_TOPIC, {"sw_state": "UPDATED", "current_sw_version": "v1.1"})
    board = standin.wait_for_dashboard("Updated", 10)
    assert (board.progress, board.current_sw_version, board.target_sw_version) == (
        100,
        "v1.1",
        "v1.1",
    )
    device.publish(TELEMETRY_TOPIC, {"sw_state": "IDLE"})  # the Python SDK's word
    assert standin.wait_for_dashboard(None, 10).sw_state == "IDLE"
    with pytest.raises(TimeoutError, match="dashboard tab is not 'Failed'"):
        standin.wait_for_dashboard("Failed", 0.3)


# --- the device's clock --------------------------------------------------------------------------


def test_the_standins_clock_can_be_offset_frozen_and_advanced() -> None:
    clock = Clock(offset_ms=-HOUR_MS)
    assert abs(clock.now_ms() - (now_ms() - HOUR_MS)) < 1000
    frozen = clock.freeze(1_700_000_000_000)
    assert clock.now_ms() == frozen == 1_700_000_000_000
    clock.advance(5)
    assert clock.now_ms() == 1_700_000_000_005
    clock.unfreeze()
    clock.offset_ms = 0
    assert abs(clock.now_ms() - now_ms()) < 1000


def test_faketime_env_offsets_a_process_clock(tmp_path: Path) -> None:
    if find_libfaketime() is None:
        reason = "libfaketime missing: apt-get install faketime (scripts/ensure-infra.sh)"
        if in_ci():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    code = "import json, time; print(json.dumps([time.time(), time.monotonic()]))"
    for offset, expected in (("-1h", -3600), (7200, 7200), ("+1d", 86400)):
        env = {**os.environ, **faketime_env(offset)}
        before_wall, before_mono = time.time(), time.monotonic()
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        wall, mono = json.loads(out.stdout)
        assert abs(wall - before_wall - expected) < 30, (offset, wall - before_wall)
        assert before_mono <= mono <= time.monotonic(), "the monotonic clock is not faked"
    # The gateway-under-test harness runs its processes so with a clock_offset.
    repo = SimpleNamespace(url="file:///nowhere")
    gut = GatewayUnderTest(tmp_path, repo, None, "teg-clock", token=TOKEN, clock_offset="-1h")  # type: ignore[arg-type]
    env = gut.env(1883)
    assert env["FAKETIME"] == "-1h" and find_libfaketime() in env["LD_PRELOAD"].split()
