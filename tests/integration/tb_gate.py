"""A TCP proxy in front of Mosquitto that closes device sessions the way ThingsBoard does.

No pytest imports. The stand-in is an MQTT *client* of a real broker, so it cannot close a
device's connection; the gate sits between the device and the broker (plain TCP, MQTT 3.1.1 or 5,
QoS 0/1), forwards bytes both ways, reads the device's packets (fixed header, CONNECT client id
and username, PUBLISH topic and payload) and drops the device's TCP connection where the real
server would close the session, never forwarding the offending packet:

* a packet whose remaining length (for a PUBLISH: topic + packet id + payload) is over
  ``max_message_size`` (65536, ``transport.mqtt.netty.max_payload_size``);
* a publish tb_device_api.check_publish refuses (invalid JSON, a request id that is not a
  decimal integer...);
* an older connection with the same username when a new one connects (one session per device,
  ``actors.max_concurrent_sessions_per_device=1``): the older one is dropped;
* with ``tokens`` given, a username not among them gets CONNACK 5 (never 4) and is closed;
  :meth:`SessionGate.allow` adds one (a provisioned device's);
* a provision-only session (user name or client id ``provision``) is accepted whatever the
  tokens and evicts nobody; it is closed on any publish tb_provision refuses.

A retained publish is forwarded without its retain flag (the server ignores retain) and noted
in :attr:`protocol_errors`. Every session the gate closed is in :attr:`closed_sessions` with
the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from tb_device_api import MAX_MESSAGE_SIZE, SessionClosed, check_publish
from tb_mqtt_wire import CONNECT, PUBLISH, FieldReader, Malformed, varint
from tb_provision import check_provision_publish, is_provision_session

CONNACK_BAD_TOKEN = b"\x20\x02\x00\x05"


@dataclass(frozen=True)
class ClosedSession:
    """A device session the gate closed."""

    number: int
    """The connection's number, in accept order from 1."""
    username: str | None
    client_id: str | None
    reason: str
    at: float
    """``time.monotonic()``."""


@dataclass
class _Conn:
    number: int
    device: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    username: str | None = None
    client_id: str | None = None
    level: int = 4
    connected: bool = False
    closed: bool = False
    provision_only: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class SessionGate:
    """See the module docstring. ``start()`` listens on ``host:port`` (0: any free port)."""

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_message_size: int = MAX_MESSAGE_SIZE,
        tokens: Iterable[str] | None = None,
        check: Callable[[str, bytes], None] = check_publish,
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host, self.port = host, port
        self.max_message_size = max_message_size
        self.tokens = None if tokens is None else set(tokens)
        self._check = check
        self._cond = threading.Condition()
        self._conns: list[_Conn] = []
        self._accepted = 0
        self._closed: list[ClosedSession] = []
        self._errors: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> Self:
        self._thread.start()
        self._server = self._run(asyncio.start_server(self._serve, self.host, self.port), timeout)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            self._run(self._shutdown(), 5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        with contextlib.suppress(RuntimeError):
            self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    # -- what happened ------------------------------------------------------------------------
    @property
    def closed_sessions(self) -> list[ClosedSession]:
        with self._cond:
            return list(self._closed)

    @property
    def protocol_errors(self) -> list[str]:
        """Why sessions were closed for a violation, and retained publishes (not closed)."""
        with self._cond:
            return list(self._errors)

    @property
    def connections(self) -> int:
        """Connections accepted so far."""
        with self._cond:
            return self._accepted

    def allow(self, token: str) -> None:
        """Accept ``token`` from now on (with ``tokens`` given)."""
        with self._cond:
            if self.tokens is not None:
                self.tokens.add(token)

    def sessions(self) -> list[tuple[int, str | None, str | None]]:
        """Open sessions that sent CONNECT: (number, username, client id)."""
        with self._cond:
            return [(c.number, c.username, c.client_id) for c in self._conns if c.connected]

    def wait_for_closed(self, count: int = 1, timeout: float = 10.0) -> list[ClosedSession]:
        """Until the gate has closed at least ``count`` sessions in all."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._closed) >= count, timeout):
                raise TimeoutError(f"{len(self._closed)} session(s) closed, expected {count}")
            return list(self._closed)

    def drop(self, username: str | None = None, reason: str = "closed by the test") -> int:
        """Close every open session (of ``username`` only, if given); how many were closed."""

        async def drop_all() -> int:
            victims = [c for c in self._conns if username is None or c.username == username]
            for conn in victims:
                self._close(conn, reason, violation=False)
            return len(victims)

        result: int = self._run(drop_all(), 5)
        return result

    # -- the proxy (loop thread) --------------------------------------------------------------
    def _run(self, coro: object, timeout: float) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)  # type: ignore[arg-type]

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            self._close(conn, "gate closed", violation=False, record=False)
        await asyncio.sleep(0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._cond:
            self._accepted += 1
            conn = _Conn(self._accepted, writer)
            self._conns.append(conn)
        try:
            up_reader, conn.upstream = await asyncio.open_connection(*self.upstream)
        except OSError:
            self._close(conn, "broker unreachable", violation=False, record=False)
            return
        down = asyncio.create_task(self._pipe_down(up_reader, conn))
        up = asyncio.create_task(self._pipe_up(reader, conn))
        conn.tasks = [down, up]
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait(conn.tasks, return_when=asyncio.FIRST_COMPLETED)
        self._close(conn, "", violation=False, record=False)

    async def _pipe_down(self, reader: asyncio.StreamReader, conn: _Conn) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                conn.device.write(data)
                await conn.device.drain()

    async def _pipe_up(self, reader: asyncio.StreamReader, conn: _Conn) -> None:
        buf = bytearray()
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                buf += data
                if not await self._forward_packets(buf, conn):
                    return

    async def _forward_packets(self, buf: bytearray, conn: _Conn) -> bool:
        """Forward the complete packets at the start of ``buf``; False once closed."""
        assert conn.upstream is not None
        while len(buf) >= 2:
            try:
                found = varint(buf, 1)
            except Malformed as exc:
                self._close(conn, f"malformed packet: {exc}")
                return False
            if found is None:
                break
            remaining, start = found
            if remaining > self.max_message_size:
                self._close(
                    conn,
                    f"message too large: remaining length {remaining} > {self.max_message_size}",
                )
                return False
            if len(buf) < start + remaining:
                break
            packet = bytes(buf[: start + remaining])
            del buf[: start + remaining]
            try:
                packet = self._inspect(conn, packet, start)
            except (SessionClosed, Malformed) as exc:
                if not conn.closed:
                    self._close(conn, str(exc) or type(exc).__name__)
                return False
            conn.upstream.write(packet)
        await conn.upstream.drain()
        return not conn.closed

    def _inspect(self, conn: _Conn, packet: bytes, start: int) -> bytes:
        kind = packet[0] >> 4
        if not conn.connected and kind != CONNECT:
            raise Malformed("the first packet is not CONNECT")
        if kind == CONNECT:
            self._on_connect(conn, FieldReader(packet, start))
        elif kind == PUBLISH:
            qos, retain = (packet[0] >> 1) & 3, packet[0] & 1
            fields = FieldReader(packet, start)
            topic = fields.text()
            if qos:
                fields.take(2)
            if conn.level == 5:
                fields.properties()
            check = check_provision_publish if conn.provision_only else self._check
            check(topic, packet[fields.pos :])
            if retain:
                with self._cond:
                    self._errors.append(f"retained publish on {topic} (the server ignores retain)")
                packet = bytes([packet[0] & 0xFE]) + packet[1:]
        return packet

    def _on_connect(self, conn: _Conn, fields: FieldReader) -> None:
        fields.text()  # protocol name
        conn.level = fields.take(1)[0]
        flags = fields.take(1)[0]
        fields.take(2)  # keep alive
        if conn.level == 5:
            fields.properties()
        conn.client_id = fields.text()
        if flags & 0x04:  # will
            if conn.level == 5:
                fields.properties()
            fields.text()
            fields.binary()
        conn.username = fields.text() if flags & 0x80 else None
        conn.provision_only = is_provision_session(conn.username, conn.client_id)
        with self._cond:
            known = self.tokens is None or conn.username in self.tokens
        if not known and not conn.provision_only:
            conn.device.write(CONNACK_BAD_TOKEN)
            raise SessionClosed(f"unknown token {conn.username!r}: CONNACK 5")
        conn.connected = True
        if conn.username is not None and not conn.provision_only:
            for other in list(self._conns):
                if other is not conn and other.connected and other.username == conn.username:
                    self._close(
                        other,
                        f"evicted by session #{conn.number} with the same credentials",
                        violation=False,
                    )

    def _close(
        self, conn: _Conn, reason: str, *, violation: bool = True, record: bool = True
    ) -> None:
        if conn.closed:
            return
        conn.closed = True
        for writer in (conn.device, conn.upstream):
            if writer is not None:
                with contextlib.suppress(Exception):
                    writer.close()
        current = asyncio.current_task()
        for task in conn.tasks:
            if task is not current:
                task.cancel()
        with self._cond:
            with contextlib.suppress(ValueError):
                self._conns.remove(conn)
            if record:
                self._closed.append(
                    ClosedSession(
                        conn.number, conn.username, conn.client_id, reason, time.monotonic()
                    )
                )
                if violation:
                    self._errors.append(
                        f"session #{conn.number} ({conn.username}) closed: {reason}"
                    )
            self._cond.notify_all()
