"""Parsing what ThingsBoard publishes on the attribute topics (untrusted network input)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from teg_ota.domain.core.ota_messages import (
    MAX_PAYLOAD_BYTES,
    OTA_ATTRIBUTE_KEYS,
    InvalidOta,
    NotOta,
    OtaDeleted,
    OtaMessage,
    OtaRequest,
    is_ota_notification,
    parse_ota_message,
)

PUSH = {"sw_title": "teg-controller", "sw_version": "v1.2.3"}
EXPECTED_PUSH = OtaRequest(version="v1.2.3", title="teg-controller")
MESSAGE_TYPES = (OtaRequest, OtaDeleted, NotOta, InvalidOta)


# --------------------------------------------------------------------------- requests


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(json.dumps(PUSH).encode(), id="bytes"),
        pytest.param(bytearray(json.dumps(PUSH).encode()), id="bytearray"),
        pytest.param(memoryview(json.dumps(PUSH).encode()), id="memoryview"),
        pytest.param(json.dumps(PUSH), id="str"),
        pytest.param(dict(PUSH), id="dict"),
        pytest.param(json.dumps({"shared": PUSH}), id="shared-response"),
        pytest.param({"shared": dict(PUSH)}, id="shared-response-dict"),
        pytest.param(
            json.dumps({"client": {"x": 1}, "shared": PUSH}), id="response-with-client-keys"
        ),
        pytest.param(
            json.dumps({"sf_title": "teg-controller", "sf_version": "v1.2.3"}), id="sf-aliases"
        ),
        pytest.param(
            json.dumps({"sf_title": "teg-controller", "sw_version": "v1.2.3"}), id="mixed-keys"
        ),
        pytest.param(
            json.dumps({**PUSH, "sf_title": "old", "sf_version": "v0.0.1"}), id="sw-wins-flat"
        ),
        pytest.param(
            json.dumps({"sf_title": "old", "sf_version": "v0.0.1", **PUSH}),
            id="sw-wins-whatever-the-order",
        ),
        pytest.param(
            json.dumps({"shared": {**PUSH, "sf_version": "v0.0.1"}}), id="sw-wins-in-response"
        ),
        pytest.param(
            json.dumps({**PUSH, "targetFirmware": "x", "other": [1, 2]}),
            id="unrelated-keys-alongside",
        ),
        pytest.param(b" \n" + json.dumps(PUSH).encode() + b"\n ", id="surrounding-whitespace"),
    ],
)
def test_ota_request_is_read_from_every_shape(payload: object) -> None:
    assert parse_ota_message(payload) == EXPECTED_PUSH


def test_request_without_title() -> None:
    assert parse_ota_message('{"sw_version":"v2"}') == OtaRequest(version="v2")


def test_optional_package_fields_are_carried() -> None:
    payload = {
        "shared": {
            **PUSH,
            "sw_size": 1234,
            "sw_checksum": "abc123",
            "sw_checksum_algorithm": "SHA256",
            "sw_url": "https://example.invalid/pkg",
            "sw_tag": "teg-controller v1.2.3",
        }
    }

    assert parse_ota_message(json.dumps(payload)) == OtaRequest(
        version="v1.2.3",
        title="teg-controller",
        size=1234,
        checksum="abc123",
        checksum_algorithm="SHA256",
        url="https://example.invalid/pkg",
        tag="teg-controller v1.2.3",
    )


def test_sf_aliases_cover_the_optional_fields_too() -> None:
    message = parse_ota_message({"sf_version": "v1", "sf_size": 7, "sf_checksum": "c"})

    assert message == OtaRequest(version="v1", size=7, checksum="c")


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        pytest.param({"sw_size": "12"}, OtaRequest(version="v1"), id="size-as-text-dropped"),
        pytest.param({"sw_size": True}, OtaRequest(version="v1"), id="size-bool-dropped"),
        pytest.param({"sw_size": 1.5}, OtaRequest(version="v1"), id="size-float-dropped"),
        pytest.param({"sw_checksum": 5}, OtaRequest(version="v1"), id="checksum-int-dropped"),
        pytest.param({"sw_url": None}, OtaRequest(version="v1"), id="url-null-dropped"),
        pytest.param({"sw_tag": "t" * 1025}, OtaRequest(version="v1"), id="tag-too-long-dropped"),
        pytest.param(
            {"sw_tag": "t" * 1024}, OtaRequest(version="v1", tag="t" * 1024), id="tag-max"
        ),
    ],
)
def test_malformed_optional_fields_are_dropped_not_fatal(
    extra: dict[str, object], expected: OtaRequest
) -> None:
    assert parse_ota_message({"sw_version": "v1", **extra}) == expected


def test_version_is_passed_on_raw_for_later_validation() -> None:
    # An operator's typo must come back as FAILED with a reason, so it is not refused here.
    assert parse_ota_message('{"sw_version":"v1;rm -rf /"}') == OtaRequest(version="v1;rm -rf /")


# --------------------------------------------------------------------------- deletions


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        pytest.param(
            '{"deleted":["sw_url","sw_tag"]}', OtaDeleted(("sw_url", "sw_tag")), id="optional-keys"
        ),
        pytest.param(
            json.dumps({"deleted": list(OTA_ATTRIBUTE_KEYS)}),
            OtaDeleted(OTA_ATTRIBUTE_KEYS),
            id="unassigned",
        ),
        pytest.param(
            '{"deleted":["sf_version","sw_version"]}', OtaDeleted(("sw_version",)), id="alias-dedup"
        ),
        pytest.param(
            '{"deleted":["other","sw_url"]}', OtaDeleted(("sw_url",)), id="unrelated-filtered"
        ),
        pytest.param({"deleted": ["sw_title"]}, OtaDeleted(("sw_title",)), id="dict-input"),
    ],
)
def test_deleted_ota_keys(payload: object, expected: OtaDeleted) -> None:
    assert parse_ota_message(payload) == expected


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param("{}", id="empty-answer"),
        pytest.param('{"shared":{}}', id="empty-shared-answer"),
        pytest.param('{"shared":{"sw_title":"teg-controller"}}', id="answer-without-version"),
    ],
)
def test_an_answer_that_names_no_version_means_nothing_is_assigned(payload: str) -> None:
    """An unassignment pushed while the gateway was offline is only seen this way."""
    message = parse_ota_message(payload)
    assert message == OtaDeleted(("sw_title", "sw_version"))
    assert is_ota_notification(message)


def test_deleted_unrelated_keys_only_is_not_ota() -> None:
    assert isinstance(parse_ota_message('{"deleted":["colour","fw_title"]}'), NotOta)
    assert isinstance(parse_ota_message('{"deleted":[]}'), NotOta)


# --------------------------------------------------------------------------- not for us / broken


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param('{"colour":"red"}', id="unrelated-attribute"),
        pytest.param('{"client":{"sw_version":"v1"}}', id="client-keys-only"),
        pytest.param('{"fw_title":"x","fw_version":"v1"}', id="firmware-keys"),
        pytest.param('{"sw_title":"teg-controller"}', id="title-without-version"),
        pytest.param('{"sw_version":null}', id="null-version"),
        pytest.param("", id="empty-str"),
        pytest.param(b"", id="empty-bytes"),
        pytest.param(" \t\r\n", id="whitespace"),
        pytest.param(None, id="None"),
    ],
)
def test_not_ota(payload: object) -> None:
    assert isinstance(parse_ota_message(payload), NotOta)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param('{"sw_version":1}', id="version-int"),
        pytest.param('{"sw_version":["v1"]}', id="version-list"),
        pytest.param('{"sw_version":{"v":1}}', id="version-object"),
        pytest.param('{"sw_version":true}', id="version-bool"),
        pytest.param('{"sf_version":2}', id="alias-version-int"),
        pytest.param(json.dumps({"sw_version": "v" * 1025}), id="version-too-long"),
        pytest.param('{"shared":"sw_version=v1"}', id="shared-not-object"),
        pytest.param('{"shared":["sw_version"]}', id="shared-list"),
        pytest.param('{"deleted":"sw_url"}', id="deleted-not-list"),
        pytest.param('{"deleted":{"sw_url":1}}', id="deleted-object"),
        pytest.param('{"deleted":["sw_url",1]}', id="deleted-non-string"),
        pytest.param("not json", id="non-json"),
        pytest.param('{"sw_version":"v1"', id="truncated-json"),
        pytest.param(b"\xff\xfe{}", id="non-utf8"),
        pytest.param(b'{"sw_version":"v\xe9"}', id="latin1"),
        pytest.param("[]", id="json-array"),
        pytest.param('[{"sw_version":"v1"}]', id="json-array-of-object"),
        pytest.param("42", id="json-number"),
        pytest.param('"v1.2.3"', id="json-string"),
        pytest.param("null", id="json-null"),
        pytest.param("NaN", id="json-nan"),
        pytest.param("1" * 5000, id="int-too-long-for-python"),
        pytest.param(b"x" * (MAX_PAYLOAD_BYTES + 1), id="bytes-over-64KiB"),
        pytest.param("x" * (MAX_PAYLOAD_BYTES + 1), id="str-over-64KiB"),
        pytest.param(
            json.dumps({**PUSH, "pad": "x" * MAX_PAYLOAD_BYTES}).encode(), id="valid-but-over-64KiB"
        ),
        pytest.param("[" * 60_000, id="deep-array-under-limit"),
        pytest.param('{"a":' * 10_000, id="deep-object-under-limit"),
        pytest.param("[" * 100_000, id="deep-array-over-limit"),
        pytest.param(["sw_version"], id="python-list"),
        pytest.param(42, id="python-int"),
    ],
)
def test_invalid_ota(payload: object) -> None:
    message = parse_ota_message(payload)

    assert isinstance(message, InvalidOta)
    assert message.reason


def test_payload_exactly_at_the_limit_is_read() -> None:
    body = json.dumps({**PUSH, "pad": ""})
    payload = body[:-2] + "x" * (MAX_PAYLOAD_BYTES - len(body)) + body[-2:]

    assert len(payload.encode()) == MAX_PAYLOAD_BYTES
    assert parse_ota_message(payload.encode()) == EXPECTED_PUSH


# --------------------------------------------------------------------------- is_ota_notification


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        pytest.param(OtaRequest(version="v1"), True, id="request"),
        pytest.param(OtaDeleted(("sw_url",)), True, id="deleted"),
        pytest.param(NotOta("other"), False, id="not-ota"),
        pytest.param(InvalidOta("bad"), False, id="invalid"),
    ],
)
def test_is_ota_notification(message: OtaMessage, expected: bool) -> None:
    assert is_ota_notification(message) is expected


# --------------------------------------------------------------------------- fuzz

_json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
_ota_keys = st.sampled_from(
    [*OTA_ATTRIBUTE_KEYS, "sf_title", "sf_version", "shared", "deleted", "client"]
)
_json_values = st.recursive(
    _json_scalars,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(_ota_keys | st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512))
def test_fuzz_arbitrary_bytes_never_raise(payload: bytes) -> None:
    assert isinstance(parse_ota_message(payload), MESSAGE_TYPES)


@settings(max_examples=200, deadline=None)
@given(_json_values)
def test_fuzz_arbitrary_json_never_raises(value: object) -> None:
    text = json.dumps(value)

    for payload in (value, text, text.encode()):
        message = parse_ota_message(payload)
        assert isinstance(message, MESSAGE_TYPES)
        if isinstance(message, OtaRequest):
            assert isinstance(message.version, str)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(_ota_keys, _json_scalars | st.lists(_json_scalars, max_size=3), max_size=6),
    st.sampled_from(["flat", "shared"]),
)
def test_fuzz_ota_shaped_objects_never_raise(attributes: dict[str, object], shape: str) -> None:
    payload = attributes if shape == "flat" else {"shared": attributes}

    message = parse_ota_message(json.dumps(payload).encode())

    assert isinstance(message, MESSAGE_TYPES)
    assert message == parse_ota_message(payload)


@pytest.mark.parametrize("title", [5, ["teg-controller"], "x" * 1025], ids=["int", "list", "long"])
def test_a_title_that_is_not_a_short_string_is_invalid_not_absent(title: object) -> None:
    # A missing title is accepted by the title filter; a malformed one must not slip past it.
    assert isinstance(parse_ota_message({"sw_title": title, "sw_version": "v1"}), InvalidOta)
