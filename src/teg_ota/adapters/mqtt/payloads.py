"""What ThingsBoard's device MQTT API expects on the wire: topics, JSON shapes, limits.

Pure functions and constants only (no client, no clock, no I/O), so the protocol rules can be
checked on their own and the session and the link cannot drift apart on them.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Mapping
from typing import Final

from teg_ota.domain.core.ota_messages import MAX_PAYLOAD_BYTES, OTA_ATTRIBUTE_KEYS
from teg_ota.ports.telemetry_sink import TelemetryError

__all__ = [
    "ATTRIBUTES_REQUEST_PREFIX",
    "ATTRIBUTES_RESPONSE_FILTER",
    "ATTRIBUTES_RESPONSE_PREFIX",
    "ATTRIBUTES_TOPIC",
    "ATTRIBUTE_REQUEST_PAYLOAD",
    "ATTRIBUTE_SUBSCRIPTIONS",
    "DEVICE_SUBSCRIPTIONS",
    "MAX_PAYLOAD_BYTES",
    "MAX_REMAINING_LENGTH",
    "OTA_SHARED_KEYS",
    "PUBLISH_HEADER_BYTES",
    "RPC_REQUEST_FILTER",
    "RPC_REQUEST_PREFIX",
    "RPC_RESPONSE_PREFIX",
    "TELEMETRY_TOPIC",
    "attribute_request_topic",
    "fits_in_one_message",
    "flat_payload",
    "is_attribute_topic",
    "live_telemetry_payload",
    "is_stale_response",
    "mentions_ota_keys",
    "remaining_length",
    "request_ids",
    "response_request_id",
    "rpc_request_id",
    "rpc_response_payload",
    "rpc_response_topic",
    "software_report",
    "telemetry_payload",
]

TELEMETRY_TOPIC: Final = "v1/devices/me/telemetry"
ATTRIBUTES_TOPIC: Final = "v1/devices/me/attributes"
ATTRIBUTES_RESPONSE_PREFIX: Final = "v1/devices/me/attributes/response/"
ATTRIBUTES_RESPONSE_FILTER: Final = ATTRIBUTES_RESPONSE_PREFIX + "+"
ATTRIBUTES_REQUEST_PREFIX: Final = "v1/devices/me/attributes/request/"
ATTRIBUTE_SUBSCRIPTIONS: Final = (ATTRIBUTES_TOPIC, ATTRIBUTES_RESPONSE_FILTER)
"""Shared-attribute pushes and the answers to our requests."""
RPC_REQUEST_PREFIX: Final = "v1/devices/me/rpc/request/"
RPC_REQUEST_FILTER: Final = RPC_REQUEST_PREFIX + "+"
RPC_RESPONSE_PREFIX: Final = "v1/devices/me/rpc/response/"
DEVICE_SUBSCRIPTIONS: Final = (*ATTRIBUTE_SUBSCRIPTIONS, RPC_REQUEST_FILTER)
"""The device's whole inbound side: the attribute topics and server-side RPC requests."""
MAX_RPC_REQUEST_ID: Final = 2**31 - 1
"""ThingsBoard's RPC request ids are Java ints (from 0 per device); a reply on an id that
``Integer.parseInt`` refuses makes it close the session."""
OTA_PUSH_KEYS: Final = frozenset(OTA_ATTRIBUTE_KEYS) | frozenset(
    "sf_" + key[3:] for key in OTA_ATTRIBUTE_KEYS
)
"""Shared attributes of an OTA assignment in a push (``sf_*``: the aliases the gateway takes)."""
OTA_SHARED_KEYS: Final = ",".join(OTA_ATTRIBUTE_KEYS)
"""``sharedKeys`` of an attribute request: ONE comma-separated string, as ThingsBoard wants."""
ATTRIBUTE_REQUEST_PAYLOAD: Final = json.dumps({"sharedKeys": OTA_SHARED_KEYS})
"""The body of every OTA attribute request: the same keys each time, only the id changes."""
MAX_REMAINING_LENGTH: Final = MAX_PAYLOAD_BYTES
"""ThingsBoard's MQTT size limit (65536 by default). It applies to a message's *remaining
length* (topic, header and payload, see :func:`remaining_length`), not to the payload."""
PUBLISH_HEADER_BYTES: Final = 4
"""What an MQTT 3.1.1 QoS 1 PUBLISH adds to its topic and payload in the remaining length:
the topic's two-byte length prefix and the two-byte packet id."""


def remaining_length(topic: str, payload: bytes) -> int:
    """The remaining length of a QoS 1 PUBLISH of ``payload`` on ``topic`` (MQTT 3.1.1, no
    properties): what ThingsBoard's size limit is measured on."""
    return PUBLISH_HEADER_BYTES + len(topic.encode("utf-8")) + len(payload)


def fits_in_one_message(topic: str, payload: bytes) -> bool:
    """Whether ThingsBoard accepts the message at all. The one size rule: telemetry is
    checked with it before it is queued, and the sender again before each delivery (an
    entry queued by an older version, which checked the payload alone, may not fit)."""
    return remaining_length(topic, payload) <= MAX_REMAINING_LENGTH


def _json(message: object) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )


def telemetry_payload(ts_ms: int, values: Mapping[str, object]) -> bytes:
    """The telemetry message ``{"ts": <unix ms>, "values": {...}}`` as compact UTF-8 JSON.

    This is what the outbox keeps; the sender may send it flat instead
    (:func:`flat_payload`). Raises :class:`TelemetryError` when ``values`` is not JSON (NaN
    included: ThingsBoard rejects it) or the message on :data:`TELEMETRY_TOPIC` does not
    :func:`fit <fits_in_one_message>`: ThingsBoard would close the session on it, again
    and again, so such a message must never be queued.
    """
    try:
        payload = _json({"ts": ts_ms, "values": dict(values)})
    except (TypeError, ValueError) as exc:
        raise TelemetryError(f"telemetry is not JSON-serialisable: {exc}") from exc
    if not fits_in_one_message(TELEMETRY_TOPIC, payload):
        raise TelemetryError(
            f"telemetry of {len(payload)} bytes exceeds ThingsBoard's limit: "
            f"{remaining_length(TELEMETRY_TOPIC, payload)} bytes with topic and header, "
            f"at most {MAX_REMAINING_LENGTH}"
        )
    return payload


def flat_payload(payload: bytes) -> bytes | None:
    """The flat form ``{"k": v}`` of a stamped message ``{"ts": .., "values": {...}}``:
    ThingsBoard stamps a flat message with its own clock on arrival.

    ``None`` when ``payload`` is not a stamped message (it is then sent as it is), or when
    its values have a ``ts`` key (ThingsBoard would read that flat object as a stamped one).
    """
    try:
        message = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(message, dict) or set(message) != {"ts", "values"}:
        return None
    values = message["values"]
    if not isinstance(values, dict) or "ts" in values:
        return None
    try:
        return _json(values)
    except ValueError:  # NaN in a file not written by telemetry_payload
        return None


def payload_ts_ms(payload: bytes) -> int | None:
    """The ``ts`` of a stamped message ``{"ts": .., "values": {...}}``; None otherwise."""
    try:
        message = json.loads(payload)
    except ValueError:
        return None
    ts = message.get("ts") if isinstance(message, dict) else None
    return ts if isinstance(ts, int) and not isinstance(ts, bool) else None


def restamped(payload: bytes, ts_ms: int) -> bytes:
    """``payload`` with its ``ts`` replaced by ``ts_ms`` (unchanged if not stamped)."""
    try:
        message = json.loads(payload)
    except ValueError:
        return payload
    if not isinstance(message, dict) or set(message) != {"ts", "values"}:
        return payload
    try:
        return _json({"ts": ts_ms, "values": message["values"]})
    except ValueError:
        return payload


def software_report(title: str | None, version: str | None) -> dict[str, str]:
    """The ``current_sw_*`` telemetry values; an unknown one is left out (never sent as
    null), so it cannot overwrite what ThingsBoard knows."""
    return {
        key: value
        for key, value in (("current_sw_title", title), ("current_sw_version", version))
        if value is not None
    }


def attribute_request_topic(request_id: int) -> str:
    """Where to publish attribute request ``request_id``; the answer comes back on the
    response topic with the same id."""
    return f"{ATTRIBUTES_REQUEST_PREFIX}{request_id}"


def request_ids() -> Iterator[int]:
    """Attribute request ids for one link: 1, 2, 3..., never reused while it runs, so an
    answer cannot be taken for that of another request."""
    return itertools.count(1)


def is_attribute_topic(topic: str) -> bool:
    """Whether a message on ``topic`` is for ``on_attributes`` (a push or an answer)."""
    return topic == ATTRIBUTES_TOPIC or topic.startswith(ATTRIBUTES_RESPONSE_PREFIX)


def response_request_id(topic: str) -> int | None:
    """The request id of an attribute answer's topic; ``None`` for any other topic (a push
    included) and for an id that is not a decimal number (not one of ours)."""
    if not topic.startswith(ATTRIBUTES_RESPONSE_PREFIX):
        return None
    text = topic[len(ATTRIBUTES_RESPONSE_PREFIX) :]
    if not text.isascii() or not text.isdigit():
        return None
    return int(text)


def rpc_request_id(topic: str) -> int | None:
    """The id of a server-side RPC request's topic (``v1/devices/me/rpc/request/{id}``):
    ASCII decimal digits within a Java int, as ThingsBoard numbers its requests. ``None``
    for any other topic and for an id that is not such a number (it could not be answered:
    ThingsBoard would close the session on the reply's topic)."""
    if not topic.startswith(RPC_REQUEST_PREFIX):
        return None
    text = topic[len(RPC_REQUEST_PREFIX) :]
    if not text.isascii() or not text.isdigit() or len(text) > 10:
        return None
    request_id = int(text)
    return request_id if request_id <= MAX_RPC_REQUEST_ID else None


def rpc_response_topic(request_id: int) -> str:
    """Where the reply to RPC request ``request_id`` goes (the same id as the request)."""
    return f"{RPC_RESPONSE_PREFIX}{request_id}"


def rpc_response_payload(topic: str, body: object) -> bytes:
    """The reply ``body`` as compact UTF-8 JSON; :class:`TelemetryError` when it is not JSON
    (NaN included) or does not :func:`fit <fits_in_one_message>` on ``topic``."""
    try:
        payload = _json(body)
    except (TypeError, ValueError) as exc:
        raise TelemetryError(f"RPC reply is not JSON-serialisable: {exc}") from exc
    if not fits_in_one_message(topic, payload):
        raise TelemetryError(
            f"RPC reply of {len(payload)} bytes exceeds ThingsBoard's limit: "
            f"{remaining_length(topic, payload)} bytes with topic and header, "
            f"at most {MAX_REMAINING_LENGTH}"
        )
    return payload


def live_telemetry_payload(values: Mapping[str, object]) -> bytes:
    """Flat telemetry ``{"k": v}`` for a live-only message (stamped by the server on
    arrival); :class:`TelemetryError` as :func:`telemetry_payload`."""
    try:
        payload = _json(dict(values))
    except (TypeError, ValueError) as exc:
        raise TelemetryError(f"telemetry is not JSON-serialisable: {exc}") from exc
    if not fits_in_one_message(TELEMETRY_TOPIC, payload):
        raise TelemetryError(f"telemetry of {len(payload)} bytes exceeds ThingsBoard's limit")
    return payload


def mentions_ota_keys(payload: bytes) -> bool:
    """Whether an attribute push changes or deletes an OTA key (:data:`OTA_PUSH_KEYS`).

    Only such a push makes earlier answers stale: a push of unrelated shared attributes
    must not hide the answer that tells a device, back online, what was assigned meanwhile
    (ThingsBoard does not push that again). Anything unreadable mentions nothing.
    """
    try:
        message = json.loads(payload)
    except ValueError:
        return False
    if not isinstance(message, dict):
        return False
    deleted = message.get("deleted")
    named = set(message) | (
        {key for key in deleted if isinstance(key, str)} if isinstance(deleted, list) else set()
    )
    return not OTA_PUSH_KEYS.isdisjoint(named)


def is_stale_response(topic: str, last_request_before_push: int) -> bool:
    """Whether a message on ``topic`` answers a request sent before the latest attribute
    push of an OTA assignment (:func:`mentions_ota_keys`) arrived: request ids up to
    ``last_request_before_push`` (0: no such push yet).

    Such an answer may describe the assignment the push replaced, so it must not be handed
    on: newest assignment wins. Pushes, answers to later requests and topics without an id
    are never stale.
    """
    request_id = response_request_id(topic)
    return request_id is not None and request_id <= last_request_before_push
