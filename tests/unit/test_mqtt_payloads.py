"""ThingsBoard's device MQTT rules on their own (teg_ota.adapters.mqtt.payloads): topics,
JSON shapes (stamped and flat), the size limit on the remaining length, request ids and
stale attribute answers, without a broker.

The integration suite proves that ThingsBoard's stand-in accepts these; here every edge of
each rule is pinned, which a broker round trip cannot afford to do.
"""

from __future__ import annotations

import json
import math
from types import MappingProxyType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from teg_ota.adapters.mqtt.payloads import (
    ATTRIBUTE_REQUEST_PAYLOAD,
    ATTRIBUTE_SUBSCRIPTIONS,
    ATTRIBUTES_REQUEST_PREFIX,
    ATTRIBUTES_RESPONSE_FILTER,
    ATTRIBUTES_RESPONSE_PREFIX,
    ATTRIBUTES_TOPIC,
    MAX_PAYLOAD_BYTES,
    MAX_REMAINING_LENGTH,
    OTA_SHARED_KEYS,
    PUBLISH_HEADER_BYTES,
    TELEMETRY_TOPIC,
    attribute_request_topic,
    fits_in_one_message,
    flat_payload,
    is_attribute_topic,
    is_stale_response,
    mentions_ota_keys,
    remaining_length,
    request_ids,
    response_request_id,
    software_report,
    telemetry_payload,
)
from teg_ota.domain.core.ota_messages import OTA_ATTRIBUTE_KEYS
from teg_ota.ports.telemetry_sink import TelemetryError

EXPECTED_SHARED_KEYS = "sw_title,sw_version,sw_size,sw_checksum,sw_checksum_algorithm,sw_url,sw_tag"
# '{"ts":1,"values":{"x":""}}': what a one-key message costs around its string value.
ENVELOPE_BYTES = len(b'{"ts":1,"values":{"x":""}}')
# What the remaining length adds to a telemetry payload: topic length, topic, packet id.
TELEMETRY_OVERHEAD = 2 + len(b"v1/devices/me/telemetry") + 2

# --------------------------------------------------------------------------- topics


def test_topics_are_thingsboards_device_api() -> None:
    assert TELEMETRY_TOPIC == "v1/devices/me/telemetry"
    assert ATTRIBUTES_TOPIC == "v1/devices/me/attributes"
    assert ATTRIBUTES_RESPONSE_PREFIX == "v1/devices/me/attributes/response/"
    assert ATTRIBUTES_RESPONSE_FILTER == "v1/devices/me/attributes/response/+"
    assert ATTRIBUTES_REQUEST_PREFIX == "v1/devices/me/attributes/request/"
    assert ATTRIBUTE_SUBSCRIPTIONS == (ATTRIBUTES_TOPIC, ATTRIBUTES_RESPONSE_FILTER)


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("v1/devices/me/attributes", True),
        ("v1/devices/me/attributes/response/1", True),
        ("v1/devices/me/attributes/response/123456", True),
        ("v1/devices/me/attributes/request/1", False),
        ("v1/devices/me/attributesX", False),
        ("v1/devices/me/telemetry", False),
        ("v1/devices/other/attributes", False),
        ("", False),
    ],
)
def test_only_pushes_and_answers_are_attribute_messages(topic: str, expected: bool) -> None:
    assert is_attribute_topic(topic) is expected


# --------------------------------------------------------------------------- attribute requests


def test_shared_keys_are_one_comma_separated_string_of_the_ota_keys() -> None:
    assert OTA_SHARED_KEYS == EXPECTED_SHARED_KEYS
    assert OTA_SHARED_KEYS.split(",") == list(OTA_ATTRIBUTE_KEYS)
    assert json.loads(ATTRIBUTE_REQUEST_PAYLOAD) == {"sharedKeys": EXPECTED_SHARED_KEYS}


def test_request_topic_carries_the_id_the_answer_comes_back_with() -> None:
    assert attribute_request_topic(1) == "v1/devices/me/attributes/request/1"
    assert attribute_request_topic(42) == "v1/devices/me/attributes/request/42"
    answer = attribute_request_topic(42).replace("/request/", "/response/")
    assert is_attribute_topic(answer)


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("v1/devices/me/attributes/response/1", 1),
        ("v1/devices/me/attributes/response/42", 42),
        ("v1/devices/me/attributes", None),
        ("v1/devices/me/attributes/response/", None),
        ("v1/devices/me/attributes/response/abc", None),
        ("v1/devices/me/attributes/response/-1", None),
        ("v1/devices/me/attributes/response/\u00b2", None),  # a digit, not a decimal one
        ("v1/devices/me/attributes/request/3", None),
    ],
)
def test_response_request_id(topic: str, expected: int | None) -> None:
    assert response_request_id(topic) == expected


@pytest.mark.parametrize(
    ("topic", "last_request_before_push", "stale"),
    [
        # No push yet: every answer is handed on.
        ("v1/devices/me/attributes/response/1", 0, False),
        # Request 3 went out before the latest push: its answer may be older than the push.
        ("v1/devices/me/attributes/response/3", 3, True),
        ("v1/devices/me/attributes/response/2", 3, True),
        # Request 4 went out after it: the newest request's answer is handed on.
        ("v1/devices/me/attributes/response/4", 3, False),
        # A push is never stale, whatever came before.
        ("v1/devices/me/attributes", 3, False),
        ("v1/devices/me/attributes/response/x", 3, False),  # not one of ours: as today
    ],
)
def test_an_answer_to_a_request_sent_before_the_latest_push_is_stale(
    topic: str, last_request_before_push: int, stale: bool
) -> None:
    assert is_stale_response(topic, last_request_before_push) is stale


@pytest.mark.parametrize(
    ("payload", "mentions"),
    [
        (b'{"sw_title": "teg-controller", "sw_version": "v1.2.3"}', True),
        (b'{"sw_version": "v1.2.3"}', True),
        (b'{"sf_version": "v1.2.3"}', True),  # the alias the gateway accepts
        (b'{"deleted": ["sw_url", "sw_tag"]}', True),  # half of every assignment
        (b'{"deleted": ["sf_title"]}', True),
        (b'{"telemetry_interval": 10}', False),  # another shared attribute
        (b'{"deleted": ["telemetry_interval"]}', False),
        (b'{"deleted": "sw_url"}', False),
        (b'{"deleted": [1, null]}', False),
        (b'{"fw_version": "1.0"}', False),  # firmware is not this gateway's business
        (b"[]", False),
        (b"not json", False),
    ],
)
def test_only_a_push_of_ota_keys_makes_earlier_answers_stale(
    payload: bytes, mentions: bool
) -> None:
    assert mentions_ota_keys(payload) is mentions


def test_request_ids_count_from_one_and_each_link_has_its_own() -> None:
    first, second = request_ids(), request_ids()
    assert [next(first) for _ in range(3)] == [1, 2, 3]
    assert next(second) == 1
    assert next(first) == 4


# --------------------------------------------------------------------------- telemetry


def test_telemetry_is_compact_json_with_ts_and_values_in_order() -> None:
    payload = telemetry_payload(1_700_000_000_123, {"b": 1, "a": "x", "c": None})
    assert payload == b'{"ts":1700000000123,"values":{"b":1,"a":"x","c":null}}'


def test_telemetry_is_utf8_not_ascii_escaped() -> None:
    payload = telemetry_payload(1, {"sw_error": "Prüfsumme falsch ✗"})
    assert "Prüfsumme falsch ✗".encode() in payload
    assert json.loads(payload) == {"ts": 1, "values": {"sw_error": "Prüfsumme falsch ✗"}}


def test_telemetry_takes_any_mapping() -> None:
    assert json.loads(telemetry_payload(5, MappingProxyType({"n": 1}))) == {
        "ts": 5,
        "values": {"n": 1},
    }


@pytest.mark.parametrize(
    "value", [object(), b"bytes", {1, 2}, math.nan, math.inf, -math.inf], ids=repr
)
def test_values_json_cannot_carry_raise_telemetry_error(value: object) -> None:
    with pytest.raises(TelemetryError, match="not JSON-serialisable"):
        telemetry_payload(1, {"x": value})


def test_size_limit_applies_to_the_remaining_length_and_is_inclusive() -> None:
    """ThingsBoard measures topic + header + payload (the remaining length), so the largest
    telemetry payload is 27 bytes short of 65536: a payload of 65536 bytes, which the old
    payload-only check let through, would make ThingsBoard close the session."""
    assert MAX_REMAINING_LENGTH == MAX_PAYLOAD_BYTES == 65536
    largest_payload = MAX_REMAINING_LENGTH - TELEMETRY_OVERHEAD
    largest = "a" * (largest_payload - ENVELOPE_BYTES)
    payload = telemetry_payload(1, {"x": largest})
    assert len(payload) == largest_payload == 65509
    assert remaining_length(TELEMETRY_TOPIC, payload) == MAX_REMAINING_LENGTH
    with pytest.raises(TelemetryError, match="65537 bytes with topic and header, at most 65536"):
        telemetry_payload(1, {"x": largest + "a"})
    # Two bytes per character in UTF-8: too large although fewer characters than the limit.
    wide = "é" * ((largest_payload - ENVELOPE_BYTES) // 2 + 1)
    assert len(wide) < largest_payload
    with pytest.raises(TelemetryError, match="exceeds ThingsBoard's limit"):
        telemetry_payload(1, {"x": wide})


def test_remaining_length_is_topic_header_and_payload() -> None:
    assert PUBLISH_HEADER_BYTES == 4  # topic length prefix + packet id (QoS 1)
    assert remaining_length("t", b"") == 5
    assert remaining_length(TELEMETRY_TOPIC, b"x" * 10) == TELEMETRY_OVERHEAD + 10
    assert remaining_length("é", b"ab") == 4 + 2 + 2  # the topic counts in UTF-8 bytes


@pytest.mark.parametrize(
    ("topic", "payload_bytes", "fits"),
    [
        ("t", MAX_REMAINING_LENGTH - 5, True),
        ("t", MAX_REMAINING_LENGTH - 4, False),
        (TELEMETRY_TOPIC, MAX_REMAINING_LENGTH - TELEMETRY_OVERHEAD, True),
        (TELEMETRY_TOPIC, MAX_REMAINING_LENGTH - TELEMETRY_OVERHEAD + 1, False),
        (TELEMETRY_TOPIC, MAX_PAYLOAD_BYTES, False),  # what a payload-only check accepted
        (TELEMETRY_TOPIC, 0, True),
    ],
)
def test_a_message_fits_when_its_remaining_length_is_within_the_limit(
    topic: str, payload_bytes: int, fits: bool
) -> None:
    assert fits_in_one_message(topic, b"x" * payload_bytes) is fits


# --------------------------------------------------------------------------- flat telemetry


def test_flat_payload_is_the_values_alone_compact_and_utf8() -> None:
    stamped = telemetry_payload(1_700_000_000_123, {"sw_state": "FAILED", "sw_error": "Prüf ✗"})
    flat = flat_payload(stamped)
    assert flat == '{"sw_state":"FAILED","sw_error":"Prüf ✗"}'.encode()
    assert flat_payload(telemetry_payload(5, {})) == b"{}"


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[1, 2]",
        b'{"sw_state": "UPDATED"}',  # already flat
        b'{"ts": 1}',
        b'{"ts": 1, "values": [1]}',
        b'{"ts": 1, "values": {"a": 1}, "extra": 2}',
        b'{"ts": 1, "values": {"ts": 5, "values": {}}}',  # flat, ThingsBoard would misread it
        b'{"ts": 1, "values": {"ts": 5}}',
        b'{"ts": 1, "values": {"x": NaN}}',
        b"\xff\xfe",
    ],
)
def test_flat_payload_leaves_anything_else_as_it_is(payload: bytes) -> None:
    assert flat_payload(payload) is None


@given(
    ts=st.integers(min_value=0, max_value=2**53),
    values=st.dictionaries(st.text(max_size=12).filter(lambda k: k != "ts"), st.integers()),
)
def test_flat_payload_round_trips_the_values(ts: int, values: dict[str, object]) -> None:
    flat = flat_payload(telemetry_payload(ts, values))
    assert flat is not None
    assert json.loads(flat) == values
    assert len(flat) < len(telemetry_payload(ts, values))  # never larger than what was checked


json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


@given(
    ts=st.integers(min_value=0, max_value=2**53),
    values=st.dictionaries(st.text(max_size=12), json_values, max_size=6),
)
def test_telemetry_round_trips_through_json(ts: int, values: dict[str, object]) -> None:
    message = json.loads(telemetry_payload(ts, values))
    assert message == {"ts": ts, "values": values}
    assert list(message) == ["ts", "values"]


# --------------------------------------------------------------------------- current software


@pytest.mark.parametrize(
    ("title", "version", "expected"),
    [
        (
            "teg-controller",
            "v1.2.3",
            {"current_sw_title": "teg-controller", "current_sw_version": "v1.2.3"},
        ),
        ("teg-controller", None, {"current_sw_title": "teg-controller"}),
        (None, "v1.2.3", {"current_sw_version": "v1.2.3"}),
        (None, None, {}),
        ("", "", {"current_sw_title": "", "current_sw_version": ""}),
    ],
)
def test_software_report_leaves_out_what_is_unknown(
    title: str | None, version: str | None, expected: dict[str, str]
) -> None:
    assert software_report(title, version) == expected
