"""Just enough MQTT wire format for tb_gate (no pytest imports): remaining lengths and fields.

MQTT 3.1.1 (and the property blocks of MQTT 5): a fixed header byte, the remaining length as a
variable byte integer of at most 4 bytes, then the packet's fields; strings are a 2-byte length
and UTF-8 bytes.
"""

from __future__ import annotations

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, DISCONNECT = 1, 2, 3, 4, 8, 14


class Malformed(Exception):
    """Not a well-formed MQTT packet."""


def varint(data: bytes | bytearray, start: int) -> tuple[int, int] | None:
    """(value, index after it), None if incomplete; Malformed past 4 bytes."""
    value, shift = 0, 0
    for i in range(start, min(start + 4, len(data))):
        value |= (data[i] & 0x7F) << shift
        if not data[i] & 0x80:
            return value, i + 1
        shift += 7
    if len(data) >= start + 4:
        raise Malformed("remaining length longer than 4 bytes")
    return None


class FieldReader:
    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data, self.pos = data, pos

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise Malformed("packet shorter than its fields")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def binary(self) -> bytes:
        return self.take(self.u16())

    def text(self) -> str:
        try:
            return self.binary().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Malformed("a string is not UTF-8") from exc

    def properties(self) -> None:
        found = varint(self.data, self.pos)
        if found is None:
            raise Malformed("truncated properties")
        length, self.pos = found
        self.take(length)


def encode_varint(value: int) -> bytes:
    """The remaining length ``value`` as a variable byte integer."""
    out = bytearray()
    while True:
        byte, value = value % 128, value // 128
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def encode_string(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return len(data).to_bytes(2, "big") + data


def packet(first_byte: int, body: bytes) -> bytes:
    """A whole packet: fixed header byte, remaining length, ``body``."""
    return bytes([first_byte]) + encode_varint(len(body)) + body
