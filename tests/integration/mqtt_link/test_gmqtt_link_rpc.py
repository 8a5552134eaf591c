"""GmqttLink's server-side RPC against a real Mosquitto: the request subscription on every
(re)connect, ids that cannot be answered, and replies that go out live or not at all
(tests/integration/conftest.py fixtures; helpers in gmqtt_link_support.py)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from gmqtt_link_support import FAST
from harness import MosquittoBroker, wait_until

from teg_ota.adapters.mqtt import DurableOutbox, GmqttLink, MqttSettings
from teg_ota.ports.telemetry_sink import TelemetryError

REQUEST = "v1/devices/me/rpc/request/"
RESPONSE = "v1/devices/me/rpc/response/"


class Requests:
    """on_rpc callback: records (request_id, payload, thread name); may echo a reply."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.received: list[tuple[int, bytes, str]] = []
        self.link: GmqttLink | None = None

    def __call__(self, request_id: int, payload: bytes) -> None:
        with self.cond:
            self.received.append((request_id, payload, threading.current_thread().name))
            self.cond.notify_all()
        if self.link is not None:
            self.link.publish_rpc_response(request_id, {"echo": payload.decode()})

    def wait(self, count: int, timeout: float = 10.0) -> list[tuple[int, bytes, str]]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.received) >= count, timeout), self.received
            return list(self.received)


@pytest.fixture
def rpc_link(tmp_path: Path, mosquitto: MosquittoBroker):
    requests = Requests()
    link = GmqttLink(
        MqttSettings(host="127.0.0.1", port=mosquitto.port, client_id="teg-ota-rpc", **FAST),
        DurableOutbox(tmp_path / "outbox"),
        current_software=lambda: ("teg-controller", "v1.0"),
        on_attributes=lambda topic, payload: None,
        on_rpc=requests,
    )
    requests.link = link
    link.start()
    assert link.wait_connected(15)
    yield link, requests
    link.stop(2)


def test_a_request_is_handed_over_and_answered_on_its_id(
    mosquitto: MosquittoBroker, mqtt_recorder_factory, rpc_link
) -> None:
    link, requests = rpc_link
    tb = mqtt_recorder_factory(mosquitto, topics=[RESPONSE + "+"])
    time.sleep(0.3)  # the link's SUBACK

    tb.publish(REQUEST + "0", b'{"method":"ota_status","params":{}}')

    assert requests.wait(1) == [(0, b'{"method":"ota_status","params":{}}', "teg-ota-mqtt")]
    reply = tb.wait_for_message(RESPONSE + "0")
    assert reply.json() == {"echo": '{"method":"ota_status","params":{}}'}
    assert tb.on(RESPONSE + "+") == [reply]
    assert len(link.outbox) == 0, "replies never go through the outbox"


def test_the_request_subscription_is_renewed_on_reconnect(
    mosquitto: MosquittoBroker, mqtt_recorder_factory, rpc_link
) -> None:
    link, requests = rpc_link
    mosquitto.restart()  # persistence false: every subscription is gone
    wait_until(lambda: link.connected, 30, "the link to reconnect")
    tb = mqtt_recorder_factory(mosquitto, topics=[RESPONSE + "+"])

    def answered() -> bool:
        tb.publish(REQUEST + "5", b"{}")  # again until the new SUBACK is in
        return bool(tb.on(RESPONSE + "5"))

    wait_until(answered, 15, "an answer after the reconnect", interval=0.5)
    assert requests.wait(1)[0][0] == 5


@pytest.mark.parametrize("suffix", ["abc", "-1", "1.5", "2147483648", "1/2"])
def test_a_request_whose_id_cannot_be_answered_is_ignored(
    mosquitto: MosquittoBroker, mqtt_recorder_factory, rpc_link, log_lines, suffix: str
) -> None:
    link, requests = rpc_link
    tb = mqtt_recorder_factory(mosquitto, topics=[RESPONSE + "#"])
    time.sleep(0.3)

    tb.publish(REQUEST + suffix, b'{"method":"ota_status"}')
    tb.publish(REQUEST + "1", b"barrier")

    assert [r[0] for r in requests.wait(1)] == [1]
    tb.wait_for_message(RESPONSE + "1")
    time.sleep(0.3)
    assert [m.topic for m in tb.on(RESPONSE + "#")] == [RESPONSE + "1"]
    if "/" not in suffix:  # "1/2" does not even match the subscription
        assert any("its id is not a decimal integer" in line for line in log_lines)
    assert link.connected


def test_a_reply_while_offline_is_dropped_with_a_log_line(
    mosquitto: MosquittoBroker, rpc_link, log_lines
) -> None:
    link, _ = rpc_link
    mosquitto.stop()
    wait_until(lambda: not link.connected, 10, "the link to notice the broker stop")

    link.publish_rpc_response(3, {"result": "accepted"})

    wait_until(
        lambda: any("Reply to RPC request 3 dropped: not connected" in x for x in log_lines),
        5,
        "the drop to be logged",
    )
    assert len(link.outbox) == 0


def test_a_reply_that_cannot_be_sent_raises(rpc_link) -> None:
    link, _ = rpc_link
    with pytest.raises(TelemetryError):
        link.publish_rpc_response(1, {"x": float("nan")})
    with pytest.raises(TelemetryError):
        link.publish_rpc_response(1, {"x": "y" * 70_000})


def test_live_telemetry_goes_out_flat_now_or_never(
    mosquitto: MosquittoBroker, mqtt_recorder_factory, rpc_link
) -> None:
    """The controller's uptime: flat (server time), never in the outbox, dropped offline."""
    link, _ = rpc_link
    tb = mqtt_recorder_factory(mosquitto, topics=["v1/devices/me/telemetry"])
    time.sleep(0.3)
    link.publish_live_telemetry({"ms_since_controller_startup": 1234})
    message = tb.wait_for_message("v1/devices/me/telemetry")
    assert message.json() == {"ms_since_controller_startup": 1234}
    assert len(link.outbox) == 0, "live telemetry never goes through the outbox"

    mosquitto.stop()
    wait_until(lambda: not link.connected, 10, "the link to notice the broker stop")
    link.publish_live_telemetry({"ms_since_controller_startup": 5678})
    time.sleep(0.3)
    assert len(link.outbox) == 0, "dropped while offline, not queued"
    mosquitto.start()
    assert link.wait_connected(15)
    time.sleep(1.0)
    sent = [m.json() for m in tb.on("v1/devices/me/telemetry")]
    assert {"ms_since_controller_startup": 5678} not in sent, sent
    with pytest.raises(TelemetryError):
        link.publish_live_telemetry({"x": float("nan")})
