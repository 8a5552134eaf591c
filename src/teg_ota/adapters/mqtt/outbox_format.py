"""The outbox's on-disk format: entry file names and entry file content.

Kept apart from :mod:`teg_ota.adapters.mqtt.outbox` (which decides when files are written,
read and deleted) because this is a compatibility promise: entries written by one version
of teg-ota are delivered by the next, so it must not change by accident. Pure functions.

* File name: ``<sequence, 20 digits>-<kind>.msg`` where ``kind`` is ``ota`` (an OTA state
  report) or ``tel`` (any other telemetry). Sorting the names sorts the messages.
* Content: ``TEGOBX1\\n``, one line of JSON ``{"topic": ..., "size": ..., "crc32": ...}``,
  then the payload bytes. A file that does not parse or whose payload does not match its
  size and CRC is corrupt.
"""

from __future__ import annotations

import json
import re
import zlib

MAX_ENTRY_BYTES = 1024 * 1024
"""An entry file larger than this is corrupt (payloads are at most 64 KiB for ThingsBoard)."""

_MAGIC = b"TEGOBX1\n"
_SEQ_DIGITS = 20
_NAME = re.compile(r"^(\d{20})-(ota|tel)\.msg$")
_KIND_OTA = "ota"
_KIND_TELEMETRY = "tel"


class CorruptEntry(ValueError):
    """An entry file whose content cannot be trusted."""


def entry_file_name(seq: int, ota_state: bool) -> str:
    kind = _KIND_OTA if ota_state else _KIND_TELEMETRY
    return f"{seq:0{_SEQ_DIGITS}d}-{kind}.msg"


def parse_entry_file_name(name: str) -> tuple[int, bool] | None:
    """``(seq, ota_state)`` of an entry file name; ``None`` for any other file."""
    match = _NAME.match(name)
    if match is None:
        return None
    return int(match.group(1)), match.group(2) == _KIND_OTA


def encode_entry(topic: str, payload: bytes) -> bytes:
    header = json.dumps(
        {"topic": topic, "size": len(payload), "crc32": zlib.crc32(payload)},
        separators=(",", ":"),
        ensure_ascii=True,
    ).encode("ascii")
    return _MAGIC + header + b"\n" + payload


def decode_entry(data: bytes) -> tuple[str, bytes]:
    """``(topic, payload)`` of an entry file's content; raises :class:`CorruptEntry`."""
    if not data.startswith(_MAGIC):
        raise CorruptEntry("bad magic")
    end = data.find(b"\n", len(_MAGIC))
    if end < 0:
        raise CorruptEntry("no header line")
    try:
        header = json.loads(data[len(_MAGIC) : end].decode("ascii"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptEntry("header is not JSON") from exc
    if not isinstance(header, dict):
        raise CorruptEntry("header is not an object")
    topic, size, crc = header.get("topic"), header.get("size"), header.get("crc32")
    if not isinstance(topic, str) or not topic:
        raise CorruptEntry("no topic")
    if not isinstance(size, int) or not isinstance(crc, int):
        raise CorruptEntry("no size or crc32")
    payload = data[end + 1 :]
    if len(payload) != size:
        raise CorruptEntry(f"payload is {len(payload)} bytes, header says {size}")
    if zlib.crc32(payload) != crc:
        raise CorruptEntry("payload CRC mismatch")
    return topic, payload
