"""Per-device sessions over one Mosquitto: the fleet's ThingsBoard transport, as a TCP proxy.

ThingsBoard gives every device its own ``v1/devices/me/...`` namespace, keyed by the access
token its session authenticated with; a plain broker shares one namespace between all
clients. The gate sits between the gateways and Mosquitto (plain TCP, MQTT 3.1.1 as
teg-ota speaks it), learns each connection's token from its CONNECT, and rewrites the device
topics to ``d/<token>/...`` towards the broker and back, so the fleet server
(fleet_server.py), subscribed to ``d/+/...``, sees one session per device as ThingsBoard's
transport does. As tb_gate.SessionGate does for one device, it closes a session whose publish
the real server would refuse (tb_device_api.check_publish), answers an unknown token with
CONNACK 5, and evicts an older session of the same token. A session whose broker side ends
(the broker restarts) is closed: the device sees the server go away.

It also is the measuring point: every CONNACK accepted, attribute request and OTA state
reported is stamped (``time.monotonic()``, one clock for every process on the machine) into
:attr:`FleetGate.events`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from dataclasses import dataclass, field

from tb_device_api import REQUEST_PREFIX, TELEMETRY_TOPIC, SessionClosed, check_publish
from tb_mqtt_wire import (
    CONNACK,
    CONNECT,
    PUBLISH,
    SUBSCRIBE,
    FieldReader,
    Malformed,
    encode_string,
    packet,
    varint,
)
from tb_timeseries import TelemetryError, parse_telemetry

DEVICE_PREFIX = "v1/devices/me/"
CONNACK_BAD_TOKEN = b"\x20\x02\x00\x05"


def fleet_prefix(token: str) -> str:
    """The broker-side namespace of the device with ``token``."""
    return f"d/{token}/"


def split_packets(buf: bytearray) -> list[bytes]:
    """Take the complete MQTT packets off the front of ``buf`` (Malformed on garbage)."""
    out: list[bytes] = []
    while len(buf) >= 2:
        found = varint(buf, 1)
        if found is None:
            break
        remaining, start = found
        if len(buf) < start + remaining:
            break
        out.append(bytes(buf[: start + remaining]))
        del buf[: start + remaining]
    return out


def _body_start(raw: bytes) -> int:
    found = varint(raw, 1)
    if found is None:
        raise Malformed("truncated fixed header")
    return found[1]


def publish_parts(raw: bytes) -> tuple[str, bytes, bytes]:
    """``(topic, packet id bytes, payload)`` of an MQTT 3.1.1 PUBLISH."""
    fields = FieldReader(raw, _body_start(raw))
    topic = fields.text()
    packet_id = fields.take(2) if (raw[0] >> 1) & 3 else b""
    return topic, packet_id, raw[fields.pos :]


def rewrite_publish(raw: bytes, old: str, new: str) -> bytes:
    """The PUBLISH with the topic prefix ``old`` replaced by ``new`` (else unchanged)."""
    topic, packet_id, payload = publish_parts(raw)
    if not topic.startswith(old):
        return raw
    return packet(raw[0], encode_string(new + topic[len(old) :]) + packet_id + payload)


def rewrite_subscribe(raw: bytes, token: str) -> bytes:
    """The SUBSCRIBE with every ``v1/devices/me/`` filter moved to the device's namespace."""
    fields = FieldReader(raw, _body_start(raw))
    body = bytearray(fields.take(2))
    while fields.pos < len(raw):
        topic = fields.text()
        if topic.startswith(DEVICE_PREFIX):
            topic = fleet_prefix(token) + topic[len(DEVICE_PREFIX) :]
        body += encode_string(topic) + fields.take(1)
    return packet(raw[0], bytes(body))


def ota_states(payload: bytes) -> list[str]:
    """The ``sw_state`` values one telemetry publish reports (either wire shape)."""
    try:
        entries = parse_telemetry(payload)
    except TelemetryError:
        return []
    return [str(e.raw["sw_state"]) for e in entries if "sw_state" in e.raw]


@dataclass
class _Conn:
    device: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    token: str | None = None
    closed: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class FleetGate:
    """Runs on the caller's asyncio loop: ``await start()``; ``events`` kind -> times."""

    def __init__(self, upstream_port: int, tokens: set[str], host: str = "127.0.0.1") -> None:
        self.upstream_port = upstream_port
        self.tokens = tokens
        self.host = host
        self.port = 0
        self.events: dict[str, list[float]] = defaultdict(list)
        self._sessions: dict[str, _Conn] = {}
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, self.host, 0, backlog=4096)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def take_events(self) -> dict[str, list[float]]:
        events, self.events = dict(self.events), defaultdict(list)
        return events

    def _note(self, kind: str) -> None:
        self.events[kind].append(time.monotonic())

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Conn(writer)
        self._note("attempt")
        try:
            up_reader, conn.upstream = await asyncio.open_connection(self.host, self.upstream_port)
        except OSError:
            self._note("refused")
            self._close(conn)
            return
        conn.tasks = [
            asyncio.create_task(self._pipe(up_reader, conn, upwards=False)),
            asyncio.create_task(self._pipe(reader, conn, upwards=True)),
        ]
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait(conn.tasks, return_when=asyncio.FIRST_COMPLETED)
        self._close(conn)

    async def _pipe(self, reader: asyncio.StreamReader, conn: _Conn, *, upwards: bool) -> None:
        buf = bytearray()
        with contextlib.suppress(OSError, Malformed, SessionClosed):
            while data := await reader.read(65536):
                buf += data
                out = b"".join(
                    self._up(conn, raw) if upwards else self._down(conn, raw)
                    for raw in split_packets(buf)
                )
                target = conn.upstream if upwards else conn.device
                if conn.closed or target is None:
                    return
                target.write(out)
                await target.drain()

    def _up(self, conn: _Conn, raw: bytes) -> bytes:
        kind = raw[0] >> 4
        if conn.token is None and kind != CONNECT:
            raise Malformed("the first packet is not CONNECT")
        if kind == CONNECT:
            self._on_connect(conn, raw)
        elif kind == PUBLISH and conn.token is not None:
            topic, _, payload = publish_parts(raw)
            check_publish(topic, payload)
            if topic.startswith(REQUEST_PREFIX):
                self._note("request")
            elif topic == TELEMETRY_TOPIC:
                for state in ota_states(payload):
                    self._note(state)
            return rewrite_publish(raw, DEVICE_PREFIX, fleet_prefix(conn.token))
        elif kind == SUBSCRIBE and conn.token is not None:
            return rewrite_subscribe(raw, conn.token)
        return raw

    def _down(self, conn: _Conn, raw: bytes) -> bytes:
        kind = raw[0] >> 4
        if kind == CONNACK and len(raw) >= 4 and raw[3] == 0:
            self._note("connected")
        elif kind == PUBLISH and conn.token is not None:
            return rewrite_publish(raw, fleet_prefix(conn.token), DEVICE_PREFIX)
        return raw

    def _on_connect(self, conn: _Conn, raw: bytes) -> None:
        fields = FieldReader(raw, _body_start(raw))
        fields.text()  # protocol name
        fields.take(1)  # level
        flags = fields.take(1)[0]
        fields.take(2)  # keep alive
        fields.text()  # client id
        if flags & 0x04:  # will
            fields.text()
            fields.binary()
        token = fields.text() if flags & 0x80 else None
        if token is None or token not in self.tokens:
            conn.device.write(CONNACK_BAD_TOKEN)
            raise SessionClosed(f"unknown token {token!r}: CONNACK 5")
        older = self._sessions.get(token)
        if older is not None and older is not conn:
            self._close(older)  # one session per device, as ThingsBoard
        conn.token = token
        self._sessions[token] = conn

    def _close(self, conn: _Conn) -> None:
        if conn.closed:
            return
        conn.closed = True
        if conn.token is not None and self._sessions.get(conn.token) is conn:
            del self._sessions[conn.token]
        for writer in (conn.device, conn.upstream):
            if writer is not None:
                with contextlib.suppress(Exception):
                    writer.close()
        current = asyncio.current_task()
        for task in conn.tasks:
            if task is not current:
                task.cancel()
