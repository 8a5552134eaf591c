"""GmqttLink delivering telemetry through its durable outbox to a real Mosquitto: shape,
QoS 1, order, and nothing lost while the broker is down or the link restarts
(tests/integration/conftest.py fixtures; helpers in gmqtt_link_support.py).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gmqtt_link_support import (
    TELEMETRY,
    GatedProxy,
    LinkFactory,
    StepClock,
    is_software_report,
    link_maker,
    published,
    with_ts,
)
from harness import MosquittoBroker, wait_until

from teg_ota.adapters.mqtt import DurableOutbox
from teg_ota.domain.model.ota_state import OtaState
from teg_ota.ports.telemetry_sink import OtaReport


@pytest.fixture
def link_factory(tmp_path: Path) -> Iterator[LinkFactory]:
    """Links on the test's broker (gmqtt_link_support.link_maker); stopped at teardown."""
    with link_maker(tmp_path) as make:
        yield make


def test_telemetry_shape_qos1_and_order(
    mosquitto: MosquittoBroker, mqtt_recorder_factory, link_factory: LinkFactory
) -> None:
    tb = mqtt_recorder_factory(mosquitto, topics=[TELEMETRY])
    link = link_factory(mosquitto.port, clock=lambda: 1_700_000_000.123)
    assert link.wait_connected(15)
    link.publish_telemetry({"temperature": 21.5})
    link.publish_ota_state(OtaReport(OtaState.DOWNLOADING))
    link.publish_ota_state(
        OtaReport(OtaState.UPDATED, current_title="teg-controller", current_version="v1.2.3")
    )
    tb.wait_for(lambda ms: len([m for m in ms if "ts" in m.json()]) >= 4)
    # A clock standing still still gives every message its own, later ts; the connect's
    # current_sw_* report is stamped the same way, before what was published after it.
    assert with_ts(tb) == [
        {
            "ts": 1_700_000_000_123,
            "values": {"current_sw_title": "teg-controller", "current_sw_version": "v1.0.0"},
        },
        {"ts": 1_700_000_000_124, "values": {"temperature": 21.5}},
        {"ts": 1_700_000_000_125, "values": {"sw_state": "DOWNLOADING"}},
        {
            "ts": 1_700_000_000_126,
            "values": {
                "sw_state": "UPDATED",
                "current_sw_title": "teg-controller",
                "current_sw_version": "v1.2.3",
            },
        },
    ]
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
        tb.wait_for(lambda ms: len([m for m in ms if "ts" in m.json()]) >= 21, timeout=20)
        # The first connect's report took the clock's first second; the reconnect's report
        # follows the backlog, stamped after it.
        assert with_ts(tb) == [
            *({"ts": (1_700_000_001 + i) * 1000, "values": {"n": i}} for i in range(20)),
            {
                "ts": 1_700_000_021_000,
                "values": {"current_sw_title": "teg-controller", "current_sw_version": "v1.0.0"},
            },
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
    tb.wait_for(lambda ms: len([m for m in ms if "ts" in m.json()]) >= 6, timeout=15)
    assert published(tb) == [
        {"ts": 1_700_000_001_000, "values": {"sw_state": "DOWNLOADING"}},
        *({"ts": (1_700_000_002 + i) * 1000, "values": {"n": i}} for i in range(4)),
    ]
    assert is_software_report(with_ts(tb)[-1])  # the second connect's, after the backlog
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
    tb.wait_for(lambda ms: len([m for m in ms if "ts" in m.json()]) >= 31)  # + current_sw_*
    assert [m["values"]["n"] for m in published(tb)] == list(range(30))
    assert re.search(r"Client teg-ota-test-0-\S+ disconnected\.", mosquitto.logs())
