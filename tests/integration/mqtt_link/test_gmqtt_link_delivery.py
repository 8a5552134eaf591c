"""GmqttLink delivering telemetry through its durable outbox to a real Mosquitto: shape
(flat when live, stamped when queued offline), QoS 1, order, nothing lost while the broker
is down or the link restarts, and a message too large for ThingsBoard dropped instead of
blocking the rest (tests/integration/conftest.py fixtures; helpers in gmqtt_link_support.py).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from gmqtt_link_support import (
    SOFTWARE_KEYS,
    TELEMETRY,
    GatedProxy,
    LinkFactory,
    StepClock,
    published,
    telemetry_values,
    with_ts,
)
from harness import MosquittoBroker, MqttRecorder, wait_until

from teg_ota.adapters.mqtt import DurableOutbox
from teg_ota.adapters.mqtt.payloads import MAX_REMAINING_LENGTH, remaining_length
from teg_ota.domain.model.ota_state import OtaState
from teg_ota.ports.telemetry_sink import OtaReport, TelemetryError


def flat(recorder: MqttRecorder) -> list[dict[str, Any]]:
    """The flat telemetry messages (ThingsBoard stamps them on arrival)."""
    return [m for m in telemetry_values(recorder) if "ts" not in m]


def test_live_telemetry_is_flat_qos1_and_in_order(
    mosquitto: MosquittoBroker, mqtt_recorder_factory, link_factory: LinkFactory
) -> None:
    """Sent while connected, at once: no device ts, so ThingsBoard stamps every report with
    the same clock as its own QUEUED / INITIATED, whatever the gateway's clock says."""
    tb = mqtt_recorder_factory(mosquitto, topics=[TELEMETRY])
    link = link_factory(mosquitto.port, clock=lambda: 1_600_000_000.0)  # years behind
    assert link.wait_connected(15)
    link.publish_telemetry({"temperature": 21.5})
    link.publish_ota_state(OtaReport(OtaState.DOWNLOADING))
    link.publish_ota_state(
        OtaReport(OtaState.UPDATED, current_title="teg-controller", current_version="v1.2.3")
    )
    tb.wait_for(lambda ms: len(ms) >= 4)
    assert telemetry_values(tb) == [
        {"current_sw_title": "teg-controller", "current_sw_version": "v1.0.0"},
        {"temperature": 21.5},
        {"sw_state": "DOWNLOADING"},
        {
            "sw_state": "UPDATED",
            "current_sw_title": "teg-controller",
            "current_sw_version": "v1.2.3",
        },
    ]
    assert with_ts(tb) == []  # the recorder sees no "ts" at all
    wait_until(lambda: len(link.outbox) == 0, 5, "the outbox to drain after the PUBACKs")
    published = re.findall(
        rf"Received PUBLISH from teg-ota-test-\S+ \(d(\d), q(\d), r0, m\d+, '{TELEMETRY}'",
        mosquitto.logs(),
    )
    assert len(published) == 4  # current_sw_* + the three above
    assert {qos for _, qos in published} == {"1"}


def test_twenty_messages_published_while_broker_down_arrive_in_order(
    mosquitto: MosquittoBroker, mqtt_recorder_factory, link_factory: LinkFactory
) -> None:
    # The link goes through a proxy that stays shut until the recorder is subscribed again
    # after the broker restart, so the recorder cannot miss anything.
    proxy = GatedProxy(mosquitto.port)
    clock = StepClock()
    link = link_factory(proxy.port, clock=clock)
    try:
        assert link.wait_connected(15)
        wait_until(lambda: len(link.outbox) == 0, 5, "the current_sw_* report to go out")
        mosquitto.stop()
        proxy.close()
        wait_until(lambda: not link.connected, 10, "the link to notice the broker stop")
        for i in range(20):
            link.publish_telemetry({"n": i})
        assert len(link.outbox) == 20
        time.sleep(1.5)  # a few failed reconnect attempts
        assert len(link.outbox) == 20

        mosquitto.start()
        tb = mqtt_recorder_factory(mosquitto, topics=[TELEMETRY])
        proxy.open()
        assert link.wait_connected(15)
        tb.wait_for(lambda ms: len(ms) >= 21, timeout=20)
        # Queued while the broker was down: each keeps the device ts of when it happened
        # (the first connect's report took the clock's first second). The reconnect's
        # report follows the backlog, flat: it is live.
        assert telemetry_values(tb) == [
            *({"ts": (1_700_000_001 + i) * 1000, "values": {"n": i}} for i in range(20)),
            {"current_sw_title": "teg-controller", "current_sw_version": "v1.0.0"},
        ]
        wait_until(lambda: len(link.outbox) == 0, 5, "the outbox to drain")
    finally:
        proxy.close()


def test_outbox_survives_a_link_restart(
    mosquitto: MosquittoBroker, mqtt_recorder_factory, link_factory: LinkFactory, tmp_path: Path
) -> None:
    outbox_dir = tmp_path / "data" / "outbox"
    first = link_factory(mosquitto.port, outbox_dir=outbox_dir, clock=StepClock())
    assert first.wait_connected(15)
    wait_until(lambda: len(first.outbox) == 0, 5, "the current_sw_* report to go out")
    mosquitto.stop()
    wait_until(lambda: not first.connected, 10, "the link to notice the broker stop")
    first.publish_ota_state(OtaReport(OtaState.DOWNLOADING))
    for i in range(4):
        first.publish_telemetry({"n": i})
    began = time.monotonic()
    first.stop(timeout=1.0)
    assert time.monotonic() - began < 4
    assert len(DurableOutbox(outbox_dir)) == 5

    mosquitto.start()
    tb = mqtt_recorder_factory(mosquitto, topics=[TELEMETRY])
    second = link_factory(mosquitto.port, outbox_dir=outbox_dir)
    tb.wait_for(lambda ms: len(ms) >= 6, timeout=15)
    # Queued while offline, delivered by the next run, in order: the OTA state flat
    # (ThingsBoard stamps those on arrival), the other telemetry with its own ts.
    assert telemetry_values(tb)[0] == {"sw_state": "DOWNLOADING"}
    assert published(tb) == [
        {"ts": (1_700_000_002 + i) * 1000, "values": {"n": i}} for i in range(4)
    ]
    # The second connect's report, after the backlog, flat (live).
    assert set(telemetry_values(tb)[-1]) == SOFTWARE_KEYS
    wait_until(lambda: len(second.outbox) == 0, 5, "the outbox to drain")
    assert list(outbox_dir.glob("*.msg")) == []


def test_stop_flushes_pending_messages_and_disconnects(
    mosquitto: MosquittoBroker, mqtt_recorder_factory, link_factory: LinkFactory
) -> None:
    tb = mqtt_recorder_factory(mosquitto, topics=[TELEMETRY])
    link = link_factory(mosquitto.port)
    assert link.wait_connected(15)
    for i in range(30):
        link.publish_telemetry({"n": i})
    link.stop(timeout=10)
    assert len(link.outbox) == 0
    assert not link.connected
    tb.wait_for(lambda ms: len(ms) >= 31)  # + current_sw_*
    assert [m["n"] for m in flat(tb) if "n" in m] == list(range(30))
    assert re.search(r"Client teg-ota-test-0-\S+ disconnected\.", mosquitto.logs())


def test_a_message_too_large_for_thingsboard_is_dropped_and_the_next_one_arrives(
    mosquitto: MosquittoBroker,
    mqtt_recorder_factory,
    link_factory: LinkFactory,
    tmp_path: Path,
    log_lines: list[str],
) -> None:
    """An entry whose payload is exactly 65536 bytes (what the old payload-only check let
    into the outbox) is 65563 bytes with topic and header: ThingsBoard would close the
    session on it at every attempt. It is dropped with an error, counted, and what was
    queued after it still arrives. (Mosquitto itself would take it: the drop is ours.)"""
    outbox_dir = tmp_path / "data" / "outbox"
    old = DurableOutbox(outbox_dir)
    too_large = b'{"ts":1700000000000,"values":{"x":"' + b"a" * 65498 + b'"}}'
    assert len(too_large) == 65536
    assert remaining_length(TELEMETRY, too_large) == MAX_REMAINING_LENGTH + 27
    old.append(TELEMETRY, too_large)  # telemetry keeps its ts: too large on the wire
    old.append(TELEMETRY, b'{"ts":1700000000001,"values":{"after":"the large one"}}')

    tb = mqtt_recorder_factory(mosquitto, topics=[TELEMETRY])
    link = link_factory(mosquitto.port, outbox_dir=outbox_dir)
    assert link.wait_connected(15)
    link.publish_telemetry({"live": 1})
    tb.wait_for(lambda ms: any(m.json().get("live") == 1 for m in ms), timeout=15)
    wait_until(lambda: len(link.outbox) == 0, 5, "the outbox to drain")

    assert telemetry_values(tb) == [
        {"ts": 1_700_000_000_001, "values": {"after": "the large one"}},
        {"current_sw_title": "teg-controller", "current_sw_version": "v1.0.0"},
        {"live": 1},
    ]
    assert all(len(m.payload) < 1000 for m in tb.messages)
    assert link.outbox_dropped == 1
    errors = [line for line in log_lines if "ERROR" in line]
    assert len(errors) == 1, log_lines
    assert "can never be sent: 65563 bytes with topic and header" in errors[0]
    assert "at most 65536; dropped" in errors[0]
    assert link.connected  # the session was never closed over it


def test_a_report_too_large_for_thingsboard_is_refused_before_it_is_queued(
    mosquitto: MosquittoBroker, link_factory: LinkFactory
) -> None:
    """65510 bytes of payload: within the old payload-only limit, 27 bytes too many with
    the topic and the header. Refused when published, so it never reaches the outbox."""
    link = link_factory(mosquitto.port, clock=lambda: 1_700_000_000.0)
    assert link.wait_connected(15)
    wait_until(lambda: len(link.outbox) == 0, 5, "the current_sw_* report to go out")
    envelope = len(b'{"ts":1700000000001,"values":{"x":""}}')
    with pytest.raises(TelemetryError, match="65537 bytes with topic and header, at most 65536"):
        link.publish_telemetry({"x": "a" * (65510 - envelope)})
    link.publish_telemetry({"x": "a" * (65509 - envelope)})  # the largest that fits
    wait_until(lambda: len(link.outbox) == 0, 10, "the largest message to go out")
    assert link.outbox_dropped == 0 and link.connected
