"""Parse what ThingsBoard sends on the attribute topics into a typed OTA message.

Three shapes arrive: a flat push of changed shared attributes, a ``{"shared": {...}}``
response to our own request, and ``{"deleted": [...]}``. ``sw_*`` keys are the protocol;
``sf_*`` are accepted as aliases because the seed's gateway did (``sw_*`` wins).
Nothing here raises on bad input: payloads come from the network.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

MAX_PAYLOAD_BYTES = 65536
"""ThingsBoard's own default maximum MQTT payload; anything larger is not from it."""

MAX_FIELD_LENGTH = 1024

OTA_ATTRIBUTE_KEYS = (
    "sw_title",
    "sw_version",
    "sw_size",
    "sw_checksum",
    "sw_checksum_algorithm",
    "sw_url",
    "sw_tag",
)
"""What the device asks ThingsBoard for (one comma-separated string on the wire)."""

_ALIASES = {"sf_" + key[3:]: key for key in OTA_ATTRIBUTE_KEYS}


@dataclass(frozen=True, slots=True)
class OtaRequest:
    """A software package assignment. ``version`` is still raw: it is validated later, so
    an operator's typo can be reported back as FAILED with a reason."""

    version: str
    title: str | None = None
    size: int | None = None
    checksum: str | None = None
    checksum_algorithm: str | None = None
    url: str | None = None
    tag: str | None = None


@dataclass(frozen=True, slots=True)
class OtaDeleted:
    """OTA attributes were deleted (package unassigned, or optional keys cleared)."""

    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NotOta:
    """A valid message that carries no OTA information (other attributes)."""

    reason: str


@dataclass(frozen=True, slots=True)
class InvalidOta:
    """Looked like it was meant for us but could not be read (bad JSON, wrong types...)."""

    reason: str


OtaMessage = OtaRequest | OtaDeleted | NotOta | InvalidOta


def is_ota_notification(message: OtaMessage) -> bool:
    """The seed's ``on_msg_check_for_ota_update`` result: handled as an OTA notification."""
    return isinstance(message, OtaRequest | OtaDeleted)


def parse_ota_message(payload: object) -> OtaMessage:
    """Turn a raw MQTT payload (bytes, str or an already decoded mapping) into a message."""
    try:
        return _parse(payload)
    except Exception as exc:  # noqa: BLE001 - network input must never raise out of here
        return InvalidOta(f"unreadable payload ({type(exc).__name__})")


def _parse(payload: object) -> OtaMessage:
    if payload is None:
        return NotOta("empty payload")
    if isinstance(payload, bytes | bytearray | memoryview):
        raw = bytes(payload)
        if len(raw) > MAX_PAYLOAD_BYTES:
            return InvalidOta(f"payload of {len(raw)} bytes exceeds {MAX_PAYLOAD_BYTES}")
        try:
            payload = raw.decode("utf-8")
        except UnicodeDecodeError:
            return InvalidOta("payload is not UTF-8")
    if isinstance(payload, str):
        if len(payload) > MAX_PAYLOAD_BYTES:
            return InvalidOta(f"payload of {len(payload)} characters exceeds {MAX_PAYLOAD_BYTES}")
        if payload.strip() == "":
            return NotOta("empty payload")
        try:
            payload = json.loads(payload)
        except (ValueError, RecursionError):
            return InvalidOta("payload is not JSON")
    if not isinstance(payload, Mapping):
        kind = "null" if payload is None else type(payload).__name__
        return InvalidOta(f"payload is a JSON {kind}, not an object")
    return _from_mapping(payload)


NOTHING_ASSIGNED = OtaDeleted(("sw_title", "sw_version"))
"""An answer to our own request (``{}``, or ``{"shared": {...}}``) that names no version:
nothing is assigned now. It means the same as an unassignment pushed while the gateway was
offline, which it would otherwise never hear of."""


def _from_mapping(message: Mapping[object, object]) -> OtaMessage:
    if "deleted" in message and len(message) == 1:
        return _deleted(message["deleted"])
    if not message:
        return NOTHING_ASSIGNED  # ThingsBoard answers {} when none of the keys is set
    attributes: Mapping[object, object] = message
    answer = "shared" in message
    if answer:
        shared = message["shared"]
        if not isinstance(shared, Mapping):
            return InvalidOta("'shared' is not an object")
        attributes = shared
        if "sw_version" not in attributes and "sf_version" not in attributes:
            return NOTHING_ASSIGNED
    fields = _ota_fields(attributes)
    if not fields:
        return NotOta("no sw_* or sf_* attributes")
    version = fields.get("sw_version")
    if version is None:
        return NotOta("OTA attributes without sw_version")
    if not isinstance(version, str):
        return InvalidOta(f"sw_version is a {type(version).__name__}, not a string")
    if len(version) > MAX_FIELD_LENGTH:
        return InvalidOta(f"sw_version is longer than {MAX_FIELD_LENGTH} characters")
    title = fields.get("sw_title")
    if title is not None and (not isinstance(title, str) or len(title) > MAX_FIELD_LENGTH):
        return InvalidOta("sw_title is not a string of at most 1024 characters")
    size = fields.get("sw_size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int)):
        size = None
    return OtaRequest(
        version=version,
        title=title,
        size=size,
        checksum=_text(fields.get("sw_checksum")),
        checksum_algorithm=_text(fields.get("sw_checksum_algorithm")),
        url=_text(fields.get("sw_url")),
        tag=_text(fields.get("sw_tag")),
    )


def _ota_fields(attributes: Mapping[object, object]) -> dict[str, object]:
    fields: dict[str, object] = {}
    for key, value in attributes.items():
        if isinstance(key, str) and key in _ALIASES and _ALIASES[key] not in attributes:
            fields[_ALIASES[key]] = value
    for key, value in attributes.items():
        if isinstance(key, str) and key in OTA_ATTRIBUTE_KEYS:
            fields[key] = value
    return fields


def _deleted(keys: object) -> OtaMessage:
    if not isinstance(keys, list):
        return InvalidOta("'deleted' is not a list")
    ota_keys: list[str] = []
    for key in keys:
        if not isinstance(key, str):
            return InvalidOta("'deleted' is not a list of strings")
        canonical = _ALIASES.get(key, key)
        if canonical in OTA_ATTRIBUTE_KEYS and canonical not in ota_keys:
            ota_keys.append(canonical)
    if not ota_keys:
        return NotOta("no OTA attributes deleted")
    return OtaDeleted(tuple(ota_keys))


def _text(value: object) -> str | None:
    if isinstance(value, str) and len(value) <= MAX_FIELD_LENGTH:
        return value
    return None
