"""ThingsBoard's device MQTT rules on their own (teg_ota.adapters.mqtt.payloads): topics,
JSON shapes, the payload size limit and request ids, without a broker.

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
    OTA_SHARED_KEYS,
    TELEMETRY_TOPIC,
    attribute_request_topic,
    is_attribute_topic,
    request_ids,
    software_report,
    telemetry_payload,
)
from teg_ota.domain.core.ota_messages import OTA_ATTRIBUTE_KEYS
from teg_ota.ports.telemetry_sink import TelemetryError

EXPECTED_SHARED_KEYS = "sw_title,sw_version,sw_size,sw_checksum,sw_checksum_algorithm,sw_url,sw_tag"
# '{"ts":1,"values":{"x":""}}': what a one-key message costs around its string value.
ENVELOPE_BYTES = len(b'{"ts":1,"values":{"x":""}}')

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


def test_size_limit_is_in_bytes_and_inclusive() -> None:
    largest = "a" * (MAX_PAYLOAD_BYTES - ENVELOPE_BYTES)
    assert len(telemetry_payload(1, {"x": largest})) == MAX_PAYLOAD_BYTES
    with pytest.raises(TelemetryError, match=f"exceeds {MAX_PAYLOAD_BYTES}"):
        telemetry_payload(1, {"x": largest + "a"})
    # Two bytes per character in UTF-8: too large although fewer characters than the limit.
    wide = "é" * ((MAX_PAYLOAD_BYTES - ENVELOPE_BYTES) // 2 + 1)
    assert len(wide) < MAX_PAYLOAD_BYTES
    with pytest.raises(TelemetryError, match="bytes exceeds"):
        telemetry_payload(1, {"x": wide})


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
