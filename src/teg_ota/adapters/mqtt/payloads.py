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
    "MAX_PAYLOAD_BYTES",
    "OTA_SHARED_KEYS",
    "TELEMETRY_TOPIC",
    "attribute_request_topic",
    "is_attribute_topic",
    "request_ids",
    "software_report",
    "telemetry_payload",
]

TELEMETRY_TOPIC: Final = "v1/devices/me/telemetry"
ATTRIBUTES_TOPIC: Final = "v1/devices/me/attributes"
ATTRIBUTES_RESPONSE_PREFIX: Final = "v1/devices/me/attributes/response/"
ATTRIBUTES_RESPONSE_FILTER: Final = ATTRIBUTES_RESPONSE_PREFIX + "+"
ATTRIBUTES_REQUEST_PREFIX: Final = "v1/devices/me/attributes/request/"
ATTRIBUTE_SUBSCRIPTIONS: Final = (ATTRIBUTES_TOPIC, ATTRIBUTES_RESPONSE_FILTER)
"""Shared-attribute pushes and the answers to our requests: the device's whole inbound side."""
OTA_SHARED_KEYS: Final = ",".join(OTA_ATTRIBUTE_KEYS)
"""``sharedKeys`` of an attribute request: ONE comma-separated string, as ThingsBoard wants."""
ATTRIBUTE_REQUEST_PAYLOAD: Final = json.dumps({"sharedKeys": OTA_SHARED_KEYS})
"""The body of every OTA attribute request: the same keys each time, only the id changes."""


def telemetry_payload(ts_ms: int, values: Mapping[str, object]) -> bytes:
    """The telemetry message ``{"ts": <unix ms>, "values": {...}}`` as compact UTF-8 JSON.

    Raises :class:`TelemetryError` when ``values`` is not JSON (NaN included: ThingsBoard
    rejects it) or the message exceeds :data:`MAX_PAYLOAD_BYTES`: ThingsBoard would close the
    session on it, again and again, so such a message must never be queued.
    """
    message = {"ts": ts_ms, "values": dict(values)}
    try:
        payload = json.dumps(
            message, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise TelemetryError(f"telemetry is not JSON-serialisable: {exc}") from exc
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise TelemetryError(f"telemetry of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
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
