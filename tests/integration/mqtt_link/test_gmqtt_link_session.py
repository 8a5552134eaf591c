"""GmqttLink sessions against a real Mosquitto: what every connect does (report, subscribe,
request the OTA attributes), reconnects, and refusals (tests/integration/conftest.py
fixtures; helpers in gmqtt_link_support.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from pathlib import Path

import gmqtt
import pytest
from gmqtt.mqtt.constants import MQTTv311
from gmqtt_link_support import (
    ATTRIBUTES,
    EXPECTED_SHARED_KEYS,
    TELEMETRY,
    Attributes,
    LinkFactory,
)
from harness import MosquittoBroker, free_port, make_password_file, wait_until

from teg_ota.adapters.mqtt import OTA_SHARED_KEYS

# --- on every connect -----------------------------------------------------------------------------


def test_connect_reports_software_then_requests_ota_attributes(
    mosquitto: MosquittoBroker, mqtt_recorder_factory, link_factory: LinkFactory
) -> None:
    tb = mqtt_recorder_factory(mosquitto, topics=["v1/devices/me/#"])
    link = link_factory(mosquitto.port, token="device-token-1")
    assert link.wait_connected(15)
    assert link.connected and link.refused is None

    msgs = tb.wait_for(lambda ms: len(ms) >= 2)
    assert msgs[0].topic == TELEMETRY
    # Live: flat, for ThingsBoard to stamp on arrival.
    assert msgs[0].json() == {
        "current_sw_title": "teg-controller",
        "current_sw_version": "v1.0.0",
    }
    assert msgs[1].topic == "v1/devices/me/attributes/request/1"
    assert msgs[1].json() == {"sharedKeys": EXPECTED_SHARED_KEYS}
    assert OTA_SHARED_KEYS == EXPECTED_SHARED_KEYS

    link.request_ota_attributes()
    assert tb.wait_for_message("v1/devices/me/attributes/request/2").json() == {
        "sharedKeys": EXPECTED_SHARED_KEYS
    }
    logs = mosquitto.logs()
    # The token is the MQTT user name; QoS 1 on both publishes.
    assert "u'device-token-1'" in logs, logs
    cid = "teg-ota-test-0-"
    assert re.search(rf"Received PUBLISH from {cid}\S* \(d0, q1, r0, m\d+, '{TELEMETRY}'", logs)
    assert re.search(
        rf"Received PUBLISH from {cid}\S* \(d0, q1, r0, m\d+, 'v1/devices/me/attrib", logs
    )
    assert re.search(rf"Received SUBSCRIBE from {cid}", logs)


def test_connect_skips_unknown_software_values(
    mosquitto: MosquittoBroker, mqtt_recorder_factory, link_factory: LinkFactory
) -> None:
    tb = mqtt_recorder_factory(mosquitto, topics=[TELEMETRY])
    link_factory(mosquitto.port, software=("teg-controller", None))
    assert tb.wait_for_message(TELEMETRY).json() == {"current_sw_title": "teg-controller"}


def test_attribute_request_response_round_trip(
    mosquitto: MosquittoBroker, mqtt_recorder_factory, link_factory: LinkFactory
) -> None:
    tb = mqtt_recorder_factory(mosquitto, topics=["v1/devices/me/attributes/request/+"])
    answer = {"shared": {"sw_title": "teg-controller", "sw_version": "v1.2.3"}}
    tb.add_listener(
        lambda m: tb.publish(m.topic.replace("/request/", "/response/"), json.dumps(answer))
    )
    attributes = Attributes(fail_first=True)
    link = link_factory(mosquitto.port, attributes=attributes)

    topic, payload = attributes.wait_for(lambda m: m[0].endswith("/response/1"))
    assert topic == "v1/devices/me/attributes/response/1"
    assert json.loads(payload) == answer
    assert attributes.threads == {"teg-ota-mqtt"}  # called on the link's thread

    # The first callback raised: logged and swallowed, the link goes on.
    link.request_ota_attributes()
    topic, payload = attributes.wait_for(lambda m: m[0].endswith("/response/2"))
    assert json.loads(payload) == answer
    assert link.connected
    assert tb.listener_errors == []


def test_an_answer_to_a_request_sent_before_a_newer_push_is_not_handed_on(
    mosquitto: MosquittoBroker,
    mqtt_recorder_factory,
    link_factory: LinkFactory,
    log_lines: list[str],
) -> None:
    """ThingsBoard answers request 1 with the old assignment, but a push of the new one
    arrives first: the stale answer must not override it. Request 2, sent after the push,
    is answered and handed on as usual."""
    tb = mqtt_recorder_factory(mosquitto, topics=["v1/devices/me/attributes/request/+"])
    old = {"shared": {"sw_title": "teg-controller", "sw_version": "v1.0.0"}}
    new = {"sw_title": "teg-controller", "sw_version": "v2.0.0"}

    def answer(message) -> None:
        response = message.topic.replace("/request/", "/response/")
        if message.topic.endswith("/1"):
            tb.publish(ATTRIBUTES, json.dumps(new))  # the push overtakes the answer
            tb.publish(response, json.dumps(old))
        else:
            tb.publish(response, json.dumps({"shared": new}))

    tb.add_listener(answer)
    attributes = Attributes()
    link = link_factory(mosquitto.port, attributes=attributes)
    attributes.wait_for(lambda m: m[0] == ATTRIBUTES)
    link.request_ota_attributes()
    topic, payload = attributes.wait_for(lambda m: m[0].endswith("/response/2"))
    assert json.loads(payload) == {"shared": new}
    assert [t for t, _ in attributes.received] == [ATTRIBUTES, topic]  # no /response/1
    ignored = [line for line in log_lines if "attributes/response/1 ignored" in line]
    assert len(ignored) == 1 and "DEBUG" in ignored[0], log_lines
    assert tb.listener_errors == []


def test_server_push_is_received_also_after_broker_restart(
    mosquitto: MosquittoBroker, mqtt_recorder_factory, link_factory: LinkFactory
) -> None:
    attributes = Attributes()
    link = link_factory(mosquitto.port, attributes=attributes)
    assert link.wait_connected(15)
    tb = mqtt_recorder_factory(mosquitto)
    push = {"sw_title": "teg-controller", "sw_version": "v1.2.3"}
    tb.publish(ATTRIBUTES, push)
    assert json.loads(attributes.wait_for(lambda m: m[0] == ATTRIBUTES)[1]) == push

    mosquitto.restart()  # persistence false: every session and subscription is gone
    # Not "the link is disconnected": it may be connected again before a poll sees it down.
    wait_until(
        lambda: len(re.findall(r"Received SUBSCRIBE from teg-ota-test-0-", mosquitto.logs())) >= 2,
        30,
        "the link to subscribe again on a new connection",
    )
    assert link.wait_connected(20)
    tb.wait_subscribed(20)
    second = {"sw_title": "teg-controller", "sw_version": "v2.0.0"}
    # The link's SUBSCRIBE travels on its own connection: push until it got through.
    deadline = time.monotonic() + 10
    while not any(json.loads(p) == second for _, p in list(attributes.received)):
        assert time.monotonic() < deadline, "no push received after the restart"
        tb.publish(ATTRIBUTES, second)
        time.sleep(0.3)
    logs = mosquitto.logs()
    subscribes = re.findall(r"Received SUBSCRIBE from teg-ota-test-0-", logs)
    assert len(subscribes) >= 2  # once per connection: gmqtt would not re-subscribe itself
    # Every connection is the link's own, with a clean session (c1); gmqtt's built-in
    # reconnect (switched off) would come back with c0, as the recorder does.
    sessions = re.findall(r"New client connected from \S+ as teg-ota-test-0-\S+ \(p2, c(\d)", logs)
    assert len(sessions) >= 2 and set(sessions) == {"1"}, logs
    # The async on_message handler acknowledged the QoS 1 pushes.
    assert re.search(r"Received PUBACK from teg-ota-test-0-\S+ \(Mid: \d+, RC:0\)", logs)


# --- connection attempts --------------------------------------------------------------------------


def test_first_connect_retries_until_the_broker_appears(
    mosquitto_factory, link_factory: LinkFactory
) -> None:
    port = free_port()
    link = link_factory(port)
    assert not link.wait_connected(1.5)  # nothing listens yet: gmqtt alone would give up here
    mosquitto_factory(port=port)
    assert link.wait_connected(15)


def test_wrong_token_is_refused_once_without_hammering(
    mosquitto_factory, link_factory: LinkFactory, log_lines: list[str], tmp_path: Path, caplog
) -> None:
    passwd = make_password_file(tmp_path / "passwd", {"good-device-token": "unused"})
    broker = mosquitto_factory(password_file=passwd)
    token = "WRONG-token-0123456789"
    caplog.set_level(logging.DEBUG)
    link = link_factory(broker.port, token=token)

    wait_until(lambda: link.refused is not None, 15, "the refusal")
    assert link.refused is not None
    assert "refused the access token" in link.refused
    assert "CONNACK 5" in link.refused  # MQTT 3.1.1 "not authorised" from Mosquitto
    time.sleep(3)  # backoff is 0.2..1 s: a hammering link would try 3+ times more
    assert not link.connected and not link.wait_connected(0.1)

    # One CONNECT, one refusal (the fixture's own port probe is a bare TCP connection).
    logs = broker.logs()
    assert len(re.findall(r"Sending CONNACK to 127\.0\.0\.1 \(0, 5\)", logs)) == 1, logs
    assert len(re.findall(r"disconnected, not authorised", logs)) == 1, logs
    errors = [line for line in log_lines if "ERROR" in line and "refused" in line]
    assert len(errors) == 1, log_lines
    assert "ThingsBoard refused the access token" in errors[0]
    assert all(token not in line for line in log_lines)
    assert all(token not in record.getMessage() for record in caplog.records)
    # gmqtt's own "permanent refusal" lines are demoted: the link's line is the one error.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.records


# --- the gmqtt behaviours the link is built around ------------------------------------------------


async def _raw_connect(port: int, username: str | None, connected: list[int]) -> None:
    client = gmqtt.Client(f"raw-{port}")
    client.on_connect = lambda client, flags, rc, properties: connected.append(rc)
    if username is not None:
        client.set_auth_credentials(username, None)
    try:
        await asyncio.wait_for(client.connect("127.0.0.1", port, version=MQTTv311), 10)
    finally:
        with contextlib.suppress(Exception):
            await client.disconnect()


def test_gmqtt_first_connect_fails_at_once_and_refusal_raises(
    mosquitto_factory, tmp_path: Path
) -> None:
    connected: list[int] = []
    with pytest.raises(ConnectionRefusedError):  # no retry of its own: the link's backoff
        asyncio.run(_raw_connect(free_port(), None, connected))

    passwd = make_password_file(tmp_path / "passwd", {"good-device-token": "unused"})
    broker = mosquitto_factory(password_file=passwd)
    with pytest.raises(gmqtt.MQTTConnectError) as refused:
        asyncio.run(_raw_connect(broker.port, "bad-token", connected))
    assert refused.value.args[0] == 5  # what GmqttLink reads to set ``refused``
    assert connected == []  # on_connect is never called for a refusing CONNACK
