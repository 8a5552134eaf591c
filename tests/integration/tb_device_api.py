"""ThingsBoard's MQTT device API rules: topics, attribute requests, what closes a session.

No pytest imports. Shared by the stand-in (which answers requests) and the session gate (which
closes the device's connection where the real server would). From ThingsBoard's
``MqttTransportHandler.processDevicePublish`` and ``JsonMqttAdaptor`` (master, 2026): a publish
the adaptor cannot convert makes the server close the session (MQTT 3.1.1; it sends a PUBACK with
an error code only with ``send_ack_on_validation_exception`` or MQTT 5):

* telemetry (``v1/devices/me/telemetry``) or client attributes (``v1/devices/me/attributes``)
  that are not valid JSON of the right shape (see tb_timeseries.parse_telemetry);
* an attribute request ``v1/devices/me/attributes/request/{id}`` whose id is not what Java's
  ``Integer.parseInt`` accepts (``[+-]?[0-9]+`` within 32 bits), whose payload is not a JSON
  object, or whose ``sharedKeys`` / ``clientKeys`` Gson's ``getAsString()`` refuses (null, an
  object, an array of more than one element; an array of ONE string is taken as that string);
* an RPC topic ``v1/devices/me/rpc/{request,response}/{id}`` with such an id.

``sharedKeys`` is split with Java's ``String.split(",")`` and NOT trimmed: ``" sw_version"`` is a
key of its own that matches nothing. With neither ``sharedKeys`` nor ``clientKeys`` the request
asks for every attribute.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tb_timeseries import TelemetryError, decode_json, parse_telemetry, plain

TELEMETRY_TOPIC = "v1/devices/me/telemetry"
ATTRIBUTES_TOPIC = "v1/devices/me/attributes"
REQUEST_PREFIX = "v1/devices/me/attributes/request/"
RESPONSE_PREFIX = "v1/devices/me/attributes/response/"
RPC_REQUEST_PREFIX = "v1/devices/me/rpc/request/"
RPC_RESPONSE_PREFIX = "v1/devices/me/rpc/response/"
MAX_MESSAGE_SIZE = 65536
"""``transport.mqtt.netty.max_payload_size``: checked against the MQTT remaining length."""

_JAVA_INT = re.compile(r"[+-]?[0-9]+")


class SessionClosed(ValueError):
    """What the device sent makes the real server close its session; the text says why."""


def parse_request_id(text: str) -> int:
    """Java's ``Integer.parseInt`` (ASCII digits), else :class:`SessionClosed`."""
    if _JAVA_INT.fullmatch(text) and -(2**31) <= int(text) < 2**31:
        return int(text)
    raise SessionClosed(f"request id {text!r} is not a decimal integer (Integer.parseInt)")


def java_split(text: str) -> list[str]:
    """``String.split(",")``: trailing empty strings removed, nothing trimmed."""
    if text == "":
        return [""]
    parts = text.split(",")
    while parts and parts[-1] == "":
        parts.pop()
    return parts


def _gson_string(value: Any, name: str) -> str:
    """``JsonElement.getAsString()`` on a value of the request."""
    if isinstance(value, list) and len(value) == 1:
        return _gson_string(value[0], name)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):  # RawNumber too: a number as written
        return str(value)
    kind = "null" if value is None else type(plain(value)).__name__
    raise SessionClosed(f"{name} is a JSON {kind} (getAsString() throws): {plain(value)!r}")


@dataclass(frozen=True)
class AttributeQuery:
    """One attribute request as the server reads it."""

    request_id: int
    client_keys: frozenset[str] | None
    shared_keys: frozenset[str] | None
    body: Any
    """The request payload, as JSON (numbers as int/float)."""

    def answer(
        self, client: Mapping[str, Any], shared: Mapping[str, Any]
    ) -> dict[str, dict[str, Any]]:
        """``{"client": {...}, "shared": {...}}`` with the non-empty parts, ``{}`` when none."""
        everything = self.client_keys is None and self.shared_keys is None
        result: dict[str, dict[str, Any]] = {}
        for part, keys, values in (
            ("client", self.client_keys, client),
            ("shared", self.shared_keys, shared),
        ):
            if everything or keys is not None:
                found = {k: v for k, v in values.items() if everything or k in (keys or ())}
                if found:
                    result[part] = found
        return result


def parse_attribute_request(request_id: str, payload: bytes | str) -> AttributeQuery:
    """The request on ``REQUEST_PREFIX + request_id``, else :class:`SessionClosed`."""
    rid = parse_request_id(request_id)
    try:
        body = None if not payload.strip() else decode_json(payload)
    except TelemetryError as exc:
        raise SessionClosed(f"attribute request {request_id} is {exc}") from exc
    if not isinstance(body, dict):
        raise SessionClosed(f"attribute request {request_id} is not a JSON object: {plain(body)!r}")
    keys: dict[str, frozenset[str] | None] = {}
    for name in ("clientKeys", "sharedKeys"):
        if name in body:
            keys[name] = frozenset(java_split(_gson_string(body[name], name)))
        else:
            keys[name] = None
    return AttributeQuery(rid, keys["clientKeys"], keys["sharedKeys"], plain(body))


def _check_json_object(payload: bytes) -> None:
    try:
        body = None if not payload.strip() else decode_json(payload)
    except TelemetryError as exc:
        raise SessionClosed(f"client attributes are {exc}") from exc
    if not isinstance(body, dict):
        raise SessionClosed("client attributes are not a JSON object")


def check_publish(topic: str, payload: bytes) -> None:
    """:class:`SessionClosed` if the server closes the session on this publish."""
    try:
        if topic == TELEMETRY_TOPIC:
            parse_telemetry(payload)
        elif topic == ATTRIBUTES_TOPIC:
            _check_json_object(payload)
        elif topic.startswith(REQUEST_PREFIX):
            parse_attribute_request(topic[len(REQUEST_PREFIX) :], payload)
        elif topic.startswith(RPC_RESPONSE_PREFIX):
            parse_request_id(topic[len(RPC_RESPONSE_PREFIX) :])
        elif topic.startswith(RPC_REQUEST_PREFIX):
            parse_request_id(topic[len(RPC_REQUEST_PREFIX) :])
            _check_json_object(payload)
    except TelemetryError as exc:
        raise SessionClosed(f"invalid telemetry: {exc}") from exc


def publish_remaining_length(topic: str, payload: bytes, qos: int = 1) -> int:
    """The MQTT 3.1.1 remaining length of a PUBLISH: what the size limit counts."""
    return 2 + len(topic.encode()) + (2 if qos else 0) + len(payload)


__all__ = [
    "ATTRIBUTES_TOPIC",
    "MAX_MESSAGE_SIZE",
    "REQUEST_PREFIX",
    "RESPONSE_PREFIX",
    "RPC_REQUEST_PREFIX",
    "RPC_RESPONSE_PREFIX",
    "TELEMETRY_TOPIC",
    "AttributeQuery",
    "SessionClosed",
    "check_publish",
    "java_split",
    "parse_attribute_request",
    "parse_request_id",
    "publish_remaining_length",
]
