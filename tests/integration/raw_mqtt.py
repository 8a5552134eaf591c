"""A bare-socket MQTT 3.1.1 device for protocol tests (no pytest imports).

gmqtt reconnects by itself and re-sends what was not acknowledged; to see exactly when a server
(or tb_gate.SessionGate) closes a session, and to send what no library would (oversized or
malformed packets), this one does only what it is told, on a blocking socket.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
import uuid
from typing import Any

from tb_mqtt_wire import CONNACK, PUBLISH, encode_string, packet, varint

PINGREQ, PINGRESP = b"\xc0\x00", 0xD0


class RawMqttDevice:
    """One TCP connection; :meth:`connect` sends CONNECT with ``username`` (the token)."""

    def __init__(
        self, host: str, port: int, username: str | None, client_id: str | None = None
    ) -> None:
        self.username = username
        self.client_id = client_id or f"raw-{uuid.uuid4().hex[:8]}"
        self.sock = socket.create_connection((host, port), timeout=5)
        self._buf = b""
        self.messages: list[tuple[str, bytes]] = []
        self._next_id = 1

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def connect(self, keepalive: int = 60) -> int:
        """CONNECT (clean session); the CONNACK return code."""
        flags = 0x02 | (0x80 if self.username is not None else 0)
        body = encode_string("MQTT") + bytes([4, flags]) + keepalive.to_bytes(2, "big")
        body += encode_string(self.client_id)
        if self.username is not None:
            body += encode_string(self.username)
        self.send(packet(0x10, body))
        kind, data = self.read_packet()
        assert kind >> 4 == CONNACK, kind
        return data[1]

    def publish(
        self, topic: str, payload: bytes | str | Any, qos: int = 1, *, retain: bool = False
    ) -> None:
        """Send a PUBLISH (dicts and lists as JSON); no wait for the PUBACK."""
        if not isinstance(payload, bytes | str):
            payload = json.dumps(payload)
        data = payload.encode() if isinstance(payload, str) else payload
        body = encode_string(topic)
        if qos:
            body += self._next_id.to_bytes(2, "big")
            self._next_id += 1
        self.send(packet(0x30 | (qos << 1) | int(retain), body + data))

    def subscribe(self, topic: str) -> None:
        body = self._next_id.to_bytes(2, "big") + encode_string(topic) + b"\x01"
        self._next_id += 1
        self.send(packet(0x82, body))
        self._read_until(lambda kind: kind >> 4 == 9, 5)  # SUBACK

    def alive(self, timeout: float = 5.0) -> bool:
        """PINGREQ answered (through the gate and the broker): the session is open."""
        try:
            self.send(PINGREQ)
            self._read_until(lambda kind: kind == PINGRESP, timeout)
        except (OSError, EOFError, TimeoutError):
            return False
        return True

    def wait_closed(self, timeout: float = 5.0) -> bool:
        """True once the other side closed the connection, False if still open at ``timeout``."""
        try:
            self._read_until(lambda kind: False, timeout)
        except EOFError:
            return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
        return False

    def wait_message(self, topic: str, timeout: float = 5.0) -> bytes:
        def have() -> bytes | None:
            return next((p for t, p in self.messages if t == topic), None)

        if have() is None:
            self._read_until(lambda kind: have() is not None, timeout)
        found = have()
        assert found is not None
        return found

    # -- reading ----------------------------------------------------------------------------
    def read_packet(self, timeout: float = 5.0) -> tuple[int, bytes]:
        """(first byte, body) of the next packet; EOFError when the peer closed."""
        deadline = time.monotonic() + timeout
        while True:
            found = varint(self._buf, 1) if len(self._buf) >= 2 else None
            if found is not None and len(self._buf) >= found[1] + found[0]:
                end = found[1] + found[0]
                first, body, self._buf = self._buf[0], self._buf[found[1] : end], self._buf[end:]
                self._on_packet(first, body)
                return first, body
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no packet")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed by the peer")
            self._buf += chunk

    def _read_until(self, done: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            kind, _ = self.read_packet(max(0.0, deadline - time.monotonic()))
            if done(kind):
                return

    def _on_packet(self, first: int, body: bytes) -> None:
        if first >> 4 != PUBLISH:
            return
        qos = (first >> 1) & 3
        length = int.from_bytes(body[:2], "big")
        topic = body[2 : 2 + length].decode()
        start = 2 + length + (2 if qos else 0)
        self.messages.append((topic, body[start:]))
        if qos:
            self.send(b"\x40\x02" + body[2 + length : start])  # PUBACK
