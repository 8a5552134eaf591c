"""GmqttLink against a real Mosquitto with the fleet-spreading windows on (issue 16): the
first CONNECT waits its random moment in the connect window, the attribute request its
moment in the attribute window after the report, and many links share one event loop
(``start(loop)``) with no thread of their own (tests/integration/conftest.py fixtures)."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gmqtt_link_support import ATTRIBUTES, TELEMETRY
from harness import MosquittoBroker, Received

from teg_ota.adapters.mqtt import DurableOutbox, GmqttLink, MqttSettings

CONNECT_WINDOW_S = 3.0
ATTRIBUTE_WINDOW_S = 1.5
SLACK_S = 1.0
"""A local broker answers within milliseconds; this is room for a loaded machine."""
EARLY_S = 0.05
"""Clock granularity between the link's thread and the recorder's."""


def settings(port: int, client_id: str) -> MqttSettings:
    return MqttSettings(
        host="127.0.0.1",
        port=port,
        client_id=client_id,
        connect_backoff_initial_s=0.2,
        connect_backoff_max_s=1.0,
        connect_window_s=CONNECT_WINDOW_S,
        attribute_request_window_s=ATTRIBUTE_WINDOW_S,
    )


def draws(seed: int) -> tuple[float, float]:
    """The link's two draws with ``Random(seed)``: its connect moment, then its attribute
    request's delay after the report."""
    twin = random.Random(seed)
    return CONNECT_WINDOW_S * twin.random(), ATTRIBUTE_WINDOW_S * twin.random()


def late_seed(at_least: float) -> int:
    """A seed whose connect moment is at least ``at_least`` of the window: a link that did
    not wait would be seen connecting far too early."""
    return next(seed for seed in range(1000) if draws(seed)[0] >= at_least * CONNECT_WINDOW_S)


class Arrivals:
    """Recorder listener: the monotonic arrival time of every message."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seen: list[tuple[float, Received]] = []

    def __call__(self, message: Received) -> None:
        with self._lock:
            self.seen.append((time.monotonic(), message))

    def at(self, predicate) -> list[tuple[float, Received]]:
        with self._lock:
            return [(at, m) for at, m in self.seen if predicate(m)]


@pytest.fixture
def shared_loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fleet-loop", daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def test_the_first_connect_and_the_attribute_request_wait_their_moments(
    mosquitto: MosquittoBroker, mqtt_recorder_factory, tmp_path: Path
) -> None:
    seed = late_seed(0.5)
    connect_at, request_delay = draws(seed)
    tb = mqtt_recorder_factory(mosquitto, topics=[TELEMETRY, f"{ATTRIBUTES}/request/+"])
    arrivals = Arrivals()
    tb.add_listener(arrivals)
    link = GmqttLink(
        settings(mosquitto.port, "teg-ota-spread"),
        DurableOutbox(tmp_path / "outbox"),
        current_software=lambda: ("teg-controller", "v1.0.0"),
        on_attributes=lambda topic, payload: None,
        rng=random.Random(seed),
    )
    started = time.monotonic()
    link.start()
    try:
        assert link.wait_connected(CONNECT_WINDOW_S + SLACK_S), "not connected in the window"
        connected = time.monotonic() - started
        tb.wait_for(lambda ms: any(m.topic.startswith(f"{ATTRIBUTES}/request/") for m in ms))
    finally:
        link.stop(timeout=2)
    # The first CONNECT went out at the drawn moment of the window, not at once.
    assert connect_at - EARLY_S <= connected <= CONNECT_WINDOW_S + SLACK_S, (connect_at, connected)
    ((report_at, report),) = arrivals.at(lambda m: m.topic == TELEMETRY)
    assert report.json() == {"current_sw_title": "teg-controller", "current_sw_version": "v1.0.0"}
    ((request_at, _),) = arrivals.at(lambda m: m.topic.startswith(f"{ATTRIBUTES}/request/"))
    waited = request_at - report_at
    assert request_delay - EARLY_S <= waited <= ATTRIBUTE_WINDOW_S + SLACK_S, (
        request_delay,
        waited,
    )


def test_links_on_a_shared_loop_connect_spread_over_the_window(
    mosquitto: MosquittoBroker,
    mqtt_recorder_factory,
    tmp_path: Path,
    shared_loop: asyncio.AbstractEventLoop,
) -> None:
    """Twenty links on one running loop: no thread of their own, each connects at its own
    moment of the window (its report names it), each requests the attributes once, and
    stop() ends each of them."""
    fleet = 20
    tb = mqtt_recorder_factory(mosquitto, topics=[TELEMETRY, f"{ATTRIBUTES}/request/+"])
    arrivals = Arrivals()
    tb.add_listener(arrivals)
    threads_before = {thread.ident for thread in threading.enumerate()}
    links = [
        GmqttLink(
            settings(mosquitto.port, f"teg-ota-fleet-{index}"),
            DurableOutbox(tmp_path / f"outbox-{index}"),
            current_software=lambda index=index: ("teg-controller", f"v1.0.{index}"),
            on_attributes=lambda topic, payload: None,
            rng=random.Random(100 + index),
        )
        for index in range(fleet)
    ]
    started = time.monotonic()
    for link in links:
        link.start(shared_loop)
    try:
        assert all(link.wait_connected(CONNECT_WINDOW_S + SLACK_S) for link in links)
        assert {thread.ident for thread in threading.enumerate()} <= threads_before
        requests = f"{ATTRIBUTES}/request/"
        tb.wait_for(
            lambda ms: sum(m.topic.startswith(requests) for m in ms) >= fleet,
            ATTRIBUTE_WINDOW_S + SLACK_S + 5,
        )
        link_zero_request = links[0]
        link_zero_request.request_ota_attributes()  # public methods work on a shared loop
        tb.wait_for(lambda ms: sum(m.topic.startswith(requests) for m in ms) > fleet)
    finally:
        for link in links:
            link.stop(timeout=2)
    assert not any(link.connected for link in links)
    reports = {
        m.json()["current_sw_version"]: at - started
        for at, m in arrivals.at(lambda m: m.topic == TELEMETRY)
    }
    assert len(reports) == fleet
    moments = []
    for index in range(fleet):
        connect_at, _ = draws(100 + index)
        arrived = reports[f"v1.0.{index}"]
        assert connect_at - EARLY_S <= arrived <= CONNECT_WINDOW_S + SLACK_S, (index, arrived)
        moments.append(arrived)
    assert max(moments) - min(moments) >= CONNECT_WINDOW_S / 3, sorted(moments)
    assert not shared_loop.is_closed() and shared_loop.is_running()
