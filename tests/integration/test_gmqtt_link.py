"""GmqttLink against a real Mosquitto (tests/integration/conftest.py fixtures).

The ThingsBoard stand-in is an MqttRecorder: it records what the device publishes, answers
attribute requests and pushes shared attributes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gmqtt
import pytest
from gmqtt.mqtt.constants import MQTTv311
from harness import MosquittoBroker, MqttRecorder, free_port, make_password_file, wait_until
from loguru import logger

from teg_ota.adapters.durable_outbox import DurableOutbox
from teg_ota.adapters.gmqtt_link import OTA_SHARED_KEYS, GmqttLink, MqttSettings
from teg_ota.domain.model.ota_state import OtaState
from teg_ota.ports.telemetry_sink import OtaReport, TelemetryError, TelemetrySink

TELEMETRY = "v1/devices/me/telemetry"
ATTRIBUTES = "v1/devices/me/attributes"
EXPECTED_SHARED_KEYS = "sw_title,sw_version,sw_size,sw_checksum,sw_checksum_algorithm,sw_url,sw_tag"
FAST = {"connect_backoff_initial_s": 0.2, "connect_backoff_max_s": 1.0, "keepalive": 10}


# --- helpers -------------------------------------------------------------------------------------


class Attributes:
    """on_attributes callback that records (topic, payload) thread-safely."""

    def __init__(self, fail_first: bool = False) -> None:
        self._cond = threading.Condition()
        self.received: list[tuple[str, bytes]] = []
        self.threads: set[str] = set()
        self._fail_next = fail_first

    def __call__(self, topic: str, payload: bytes) -> None:
        with self._cond:
            self.received.append((topic, payload))
            self.threads.add(threading.current_thread().name)
            self._cond.notify_all()
            if self._fail_next:
                self._fail_next = False
                raise RuntimeError("callback bug")

    def wait_for(self, predicate: Callable[[tuple[str, bytes]], bool], timeout: float = 10.0):
        with self._cond:
            ok = self._cond.wait_for(lambda: any(predicate(m) for m in self.received), timeout)
            assert ok, f"no matching attribute message within {timeout}s: {self.received!r}"
            return next(m for m in self.received if predicate(m))


class StepClock:
    """Unix seconds, one second further at every call."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._next = itertools.count()
        self._start = start

    def __call__(self) -> float:
        return self._start + next(self._next)


class GatedProxy:
    """TCP forwarder 127.0.0.1:<port> -> 127.0.0.1:<upstream>; ``close()`` makes the port
    refuse connections (and drops the current ones), ``open()`` listens again."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self._lock = threading.Lock()
        self._server: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self.open()

    def open(self) -> None:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(8)
        with self._lock:
            self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def close(self) -> None:
        with self._lock:
            server, self._server = self._server, None
            sockets, self._sockets = self._sockets, []
        if server is not None:
            # shutdown() wakes the thread blocked in accept() (close() alone does not on
            # Linux: the port would keep listening until one more connection came in).
            with contextlib.suppress(OSError):
                server.shutdown(socket.SHUT_RDWR)
            server.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                downstream, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=2)
                upstream.settimeout(None)
            except OSError:
                downstream.close()
                continue
            with self._lock:
                self._sockets += [downstream, upstream]
            for src, dst in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    lines: list[str] = []
    logger.enable("teg_ota")
    sink = logger.add(lambda message: lines.append(str(message)), level="DEBUG")
    yield lines
    logger.remove(sink)


LinkFactory = Callable[..., GmqttLink]
Software = tuple[str | None, str | None]


@pytest.fixture
def link_factory(tmp_path: Path) -> Iterator[LinkFactory]:
    """``make(port, outbox_dir=None, attributes=None, software=(title, version), clock=None,
    start=True, **settings)``; every link is stopped at teardown."""
    links: list[GmqttLink] = []

    def make(
        port: int,
        outbox_dir: Path | None = None,
        attributes: Callable[[str, bytes], None] | None = None,
        software: Software | Callable[[], Software] = ("teg-controller", "v1.0.0"),
        clock: Callable[[], float] | None = None,
        start: bool = True,
        **settings: Any,
    ) -> GmqttLink:
        settings = {"client_id": f"teg-ota-test-{len(links)}-{port}", **FAST, **settings}
        link = GmqttLink(
            MqttSettings(host="127.0.0.1", port=port, **settings),
            DurableOutbox(outbox_dir or tmp_path / f"outbox-{len(links)}"),
            current_software=software if callable(software) else lambda: software,
            on_attributes=attributes or (lambda topic, payload: None),
            clock=clock or time.time,
        )
        links.append(link)
        if start:
            link.start()
        return link

    yield make
    for link in links:
        link.stop(timeout=2)


def telemetry_values(recorder: MqttRecorder) -> list[dict[str, Any]]:
    return [m.json() for m in recorder.on(TELEMETRY)]


def with_ts(recorder: MqttRecorder) -> list[dict[str, Any]]:
    return [m for m in telemetry_values(recorder) if "ts" in m]


SOFTWARE_KEYS = {"current_sw_title", "current_sw_version"}


def is_software_report(message: dict[str, Any]) -> bool:
    """The current_sw_* report the link queues on every connect (nothing else in it)."""
    values = message.get("values")
    return isinstance(values, dict) and bool(values) and set(values) <= SOFTWARE_KEYS


def published(recorder: MqttRecorder) -> list[dict[str, Any]]:
    """What the test itself published: every stamped message but the on-connect reports."""
    return [m for m in with_ts(recorder) if not is_software_report(m)]


# --- settings ------------------------------------------------------------------------------------


def test_settings_repr_hides_the_token() -> None:
    settings = MqttSettings(token="S3CRET-TOKEN", host="tb.example")
    assert "S3CRET-TOKEN" not in repr(settings)
    assert "S3CRET-TOKEN" not in str(settings)
    assert "token='***'" in repr(settings)
    assert "token=None" in repr(MqttSettings())
    assert settings.token == "S3CRET-TOKEN"
    with pytest.raises(ValueError, match="tls=True"):
        MqttSettings(ca_file="/etc/ssl/ca.pem")
    with pytest.raises(ValueError, match="cert_file"):
        MqttSettings(tls=True, key_file="/k.pem")
    with pytest.raises(ValueError, match="port"):
        MqttSettings(port=0)


def test_tls_settings_build_a_verifying_context() -> None:
    context = MqttSettings(tls=True).ssl_context()
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert MqttSettings().ssl_context() is None
    with pytest.raises(OSError):
        MqttSettings(tls=True, ca_file="/nonexistent/ca.pem").ssl_context()


def test_link_satisfies_the_port(tmp_path: Path) -> None:
    link: TelemetrySink = GmqttLink(
        MqttSettings(),
        DurableOutbox(tmp_path),
        current_software=lambda: (None, None),
        on_attributes=lambda topic, payload: None,
    )
    assert isinstance(link, GmqttLink)


def test_offline_publish_is_durable_and_bad_values_raise(tmp_path: Path) -> None:
    link = GmqttLink(
        MqttSettings(),
        DurableOutbox(tmp_path),
        current_software=lambda: (None, None),
        on_attributes=lambda topic, payload: None,
        clock=lambda: 1_700_000_000.5,
    )
    link.publish_ota_state(OtaReport(OtaState.FAILED, error="boom"))  # not started: queued
    link.request_ota_attributes()  # not started: nothing to do, no error
    entry = DurableOutbox(tmp_path).peek()
    assert entry is not None and entry.ota_state and entry.topic == TELEMETRY
    assert json.loads(entry.payload) == {
        "ts": 1_700_000_000_500,
        "values": {"sw_state": "FAILED", "sw_error": "boom"},
    }
    with pytest.raises(TelemetryError):
        link.publish_telemetry({"x": object()})
    with pytest.raises(TelemetryError):
        link.publish_telemetry({"x": float("nan")})
    with pytest.raises(TelemetryError):
        link.publish_telemetry({"big": "x" * 70000})
    assert len(link.outbox) == 1


# --- against Mosquitto ---------------------------------------------------------------------------


def test_connect_reports_software_then_requests_ota_attributes(
    mosquitto: MosquittoBroker, mqtt_recorder_factory, link_factory: LinkFactory
) -> None:
    tb = mqtt_recorder_factory(mosquitto, topics=["v1/devices/me/#"])
    link = link_factory(mosquitto.port, token="device-token-1")
    assert link.wait_connected(15)
    assert link.connected and link.refused is None

    msgs = tb.wait_for(lambda ms: len(ms) >= 2)
    assert msgs[0].topic == TELEMETRY
    report = msgs[0].json()
    assert set(report) == {"ts", "values"} and isinstance(report["ts"], int)
    assert report["values"] == {
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
    assert tb.wait_for_message(TELEMETRY).json()["values"] == {"current_sw_title": "teg-controller"}


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
    wait_until(lambda: not link.connected, 10, "the link to notice the restart")
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


class SettableClock:
    """Unix seconds as set by the test; it may go backwards."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_timestamps_never_go_back_across_clock_steps_and_restarts(
    mosquitto: MosquittoBroker, mqtt_recorder_factory, link_factory: LinkFactory, tmp_path: Path
) -> None:
    tb = mqtt_recorder_factory(mosquitto, topics=[TELEMETRY])
    outbox_dir = tmp_path / "data" / "outbox"
    mark = outbox_dir / "link" / "telemetry_last_ts"
    clock = SettableClock(1_700_000_100.0)
    first = link_factory(mosquitto.port, outbox_dir=outbox_dir, clock=clock)
    assert first.wait_connected(15)
    first.publish_ota_state(OtaReport(OtaState.DOWNLOADING))
    clock.now = 1_700_000_050.0  # the clock steps back (NTP, or a wrong manual setting)
    first.publish_ota_state(OtaReport(OtaState.DOWNLOADED))
    first.stop(timeout=5)
    assert mark.read_text() == "1700000100002\n"

    # A power cut on a Pi without RTC: the clock restarts far behind. Same data directory.
    outbox = DurableOutbox(outbox_dir)  # reopening the outbox leaves the mark alone
    assert mark.read_text() == "1700000100002\n"
    assert not (outbox_dir / "corrupt").exists()
    assert len(outbox) == 0
    clock = SettableClock(1_600_000_000.0)
    second = link_factory(mosquitto.port, outbox_dir=outbox_dir, clock=clock)
    assert second.wait_connected(15)
    second.publish_ota_state(OtaReport(OtaState.VERIFIED))
    second.publish_telemetry({"controller_state": "RUNNING"})
    clock.now = 1_700_000_200.0  # NTP synced: real time again
    second.publish_ota_state(OtaReport(OtaState.UPDATING))

    tb.wait_for(lambda ms: len([m for m in ms if "ts" in m.json()]) >= 7, timeout=15)
    stamps = [m["ts"] for m in with_ts(tb)]
    assert stamps == [
        1_700_000_100_000,  # first connect: current_sw_*
        1_700_000_100_001,
        1_700_000_100_002,
        1_700_000_100_003,  # second connect, the clock far behind: current_sw_*
        1_700_000_100_004,
        1_700_000_100_005,
        1_700_000_200_000,
    ]
    assert [m["values"].get("sw_state") for m in with_ts(tb)] == [
        None,
        "DOWNLOADING",
        "DOWNLOADED",
        None,
        "VERIFIED",
        None,
        "UPDATING",
    ]
    assert mark.read_text() == "1700000200000\n"
    assert sorted(p.name for p in mark.parent.iterdir()) == ["telemetry_last_ts"]  # no temp


def test_on_connect_report_is_stamped_after_every_earlier_message(
    mosquitto: MosquittoBroker, mqtt_recorder_factory, link_factory: LinkFactory, tmp_path: Path
) -> None:
    """Regression: the current_sw_* report of every (re)connect went out without a ts, so
    ThingsBoard stamped it with server time; on a Pi whose clock was behind after a power
    cut, a later FAILED naming the version that really runs (device ts, older) then never
    became the latest current_sw_version. The report is stamped like any other message."""
    tb = mqtt_recorder_factory(mosquitto, topics=[TELEMETRY])
    outbox_dir = tmp_path / "data" / "outbox"
    mark = outbox_dir / "link" / "telemetry_last_ts"
    first = link_factory(
        mosquitto.port,
        outbox_dir=outbox_dir,
        clock=SettableClock(1_700_000_100.0),
        software=("teg-controller", "v1.1"),
    )
    assert first.wait_connected(15)
    first.publish_ota_state(
        OtaReport(OtaState.UPDATED, current_title="teg-controller", current_version="v1.1")
    )
    first.stop(timeout=5)
    last_before_power_cut = int(mark.read_text())

    # Power cut; the clock restarts far behind. The device reconnects through a proxy that
    # can drop the connection without touching the broker or the recorder.
    proxy = GatedProxy(mosquitto.port)
    running = ["v1.1"]
    second = link_factory(
        proxy.port,
        outbox_dir=outbox_dir,
        clock=SettableClock(1_600_000_000.0),
        software=lambda: ("teg-controller", running[0]),
    )
    try:
        assert second.wait_connected(15)
        # An update fails and rolls back: the FAILED report names what runs again.
        second.publish_ota_state(
            OtaReport(
                OtaState.FAILED,
                error="v1.2 exited",
                current_title="teg-controller",
                current_version="v1.0",
            )
        )
        running[0] = "v1.0"
        wait_until(lambda: len(second.outbox) == 0, 5, "the FAILED report to go out")
        proxy.close()  # the connection drops; the link reconnects and reports again
        wait_until(lambda: not second.connected, 10, "the link to notice the drop")
        proxy.open()
        assert second.wait_connected(15)
        tb.wait_for(lambda ms: len(ms) >= 5, timeout=15)
    finally:
        proxy.close()

    messages = telemetry_values(tb)
    assert all(set(m) == {"ts", "values"} for m in messages), messages  # no server-time ones
    stamps = [m["ts"] for m in messages]
    assert stamps == sorted(set(stamps))  # strictly increasing, in the order they arrived
    reports = [i for i, m in enumerate(messages) if is_software_report(m)]
    assert [messages[i]["values"]["current_sw_version"] for i in reports] == [
        "v1.1",
        "v1.1",
        "v1.0",
    ]
    for i in reports:  # each report is stamped after everything stamped before it
        assert all(messages[i]["ts"] > m["ts"] for m in messages[:i])
    after_power_cut = messages[reports[1]]
    assert after_power_cut["ts"] > last_before_power_cut  # not the clock's 1_600_000_000_000
    # What ThingsBoard keeps as current_sw_version: the value with the newest ts.
    latest = max(
        (m for m in messages if "current_sw_version" in m["values"]), key=lambda m: m["ts"]
    )
    assert latest["values"]["current_sw_version"] == "v1.0"
    failed = next(m for m in messages if m["values"].get("sw_state") == "FAILED")
    assert after_power_cut["ts"] < failed["ts"] < messages[reports[2]]["ts"]
    assert int(mark.read_text()) == messages[-1]["ts"]


def test_an_unreadable_timestamp_mark_is_ignored(tmp_path: Path) -> None:
    mark = tmp_path / "link" / "telemetry_last_ts"
    mark.parent.mkdir()
    mark.write_text("not a number\n")
    link = GmqttLink(
        MqttSettings(),
        DurableOutbox(tmp_path),
        current_software=lambda: (None, None),
        on_attributes=lambda topic, payload: None,
        clock=lambda: 1_700_000_000.5,
    )
    link.publish_telemetry({"x": 1})
    entry = DurableOutbox(tmp_path).peek()
    assert entry is not None and json.loads(entry.payload)["ts"] == 1_700_000_000_500
    assert mark.read_text() == "1700000000500\n"


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


# --- the gmqtt behaviours the link is built around ---------------------------------------------


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
