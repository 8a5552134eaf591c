"""Helpers for the GmqttLink tests (test_gmqtt_link_*.py) against a real Mosquitto.

Test modules import them as a top-level module (``from gmqtt_link_support import ...``),
like harness.py. The ThingsBoard stand-in is an MqttRecorder (conftest.py fixtures): it
records what the device publishes, answers attribute requests and pushes shared attributes.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from harness import MqttRecorder, free_port

from teg_ota.adapters.mqtt import DurableOutbox, GmqttLink, MqttSettings

TELEMETRY = "v1/devices/me/telemetry"
ATTRIBUTES = "v1/devices/me/attributes"
EXPECTED_SHARED_KEYS = "sw_title,sw_version,sw_size,sw_checksum,sw_checksum_algorithm,sw_url,sw_tag"
FAST = {
    "connect_backoff_initial_s": 0.2,
    "connect_backoff_max_s": 1.0,
    "keepalive": 10,
    "connect_window_s": 0,  # no fleet spreading in these tests
    "attribute_request_window_s": 0,
}

LinkFactory = Callable[..., GmqttLink]
Software = tuple[str | None, str | None]
SOFTWARE_KEYS = {"current_sw_title", "current_sw_version"}


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


class SettableClock:
    """Unix seconds as set by the test; it may go backwards."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


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


@contextlib.contextmanager
def link_maker(tmp_path: Path) -> Iterator[LinkFactory]:
    """``make(port, outbox_dir=None, attributes=None, software=(title, version), clock=None,
    start=True, **settings)``; every link made is stopped on exit."""
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

    try:
        yield make
    finally:
        for link in links:
            link.stop(timeout=2)


def telemetry_values(recorder: MqttRecorder) -> list[dict[str, Any]]:
    return [m.json() for m in recorder.on(TELEMETRY)]


def with_ts(recorder: MqttRecorder) -> list[dict[str, Any]]:
    return [m for m in telemetry_values(recorder) if "ts" in m]


def is_software_report(message: dict[str, Any]) -> bool:
    """The current_sw_* report the link queues on every connect (nothing else in it)."""
    values = message.get("values")
    return isinstance(values, dict) and bool(values) and set(values) <= SOFTWARE_KEYS


def published(recorder: MqttRecorder) -> list[dict[str, Any]]:
    """What the test itself published: every stamped message but the on-connect reports."""
    return [m for m in with_ts(recorder) if not is_software_report(m)]
