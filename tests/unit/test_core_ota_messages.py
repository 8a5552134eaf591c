"""parse_ota_message: the exact reasons it gives (they end up in the gateway's log, the only
clue an operator has about a message that was ignored), the field-length limits at their
boundary, and ``sf_*`` aliases in a deletion. Gaps ``scripts/mutation.sh`` found in
test_ota_messages.py."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping

import pytest

from teg_ota.domain.core.ota_messages import (
    MAX_FIELD_LENGTH,
    MAX_PAYLOAD_BYTES,
    InvalidOta,
    NotOta,
    OtaDeleted,
    OtaMessage,
    OtaRequest,
    parse_ota_message,
)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        pytest.param(None, NotOta("empty payload"), id="none"),
        pytest.param("", NotOta("empty payload"), id="empty-str"),
        pytest.param(b" \n", NotOta("empty payload"), id="blank-bytes"),
        pytest.param(b"\xff\xfe{}", InvalidOta("payload is not UTF-8"), id="not-utf8"),
        pytest.param("not json", InvalidOta("payload is not JSON"), id="not-json"),
        pytest.param("null", InvalidOta("payload is a JSON null, not an object"), id="null"),
        pytest.param("42", InvalidOta("payload is a JSON int, not an object"), id="int"),
        pytest.param("[]", InvalidOta("payload is a JSON list, not an object"), id="list"),
        pytest.param(
            b"x" * (MAX_PAYLOAD_BYTES + 1),
            InvalidOta(f"payload of {MAX_PAYLOAD_BYTES + 1} bytes exceeds {MAX_PAYLOAD_BYTES}"),
            id="bytes-too-large",
        ),
        pytest.param(
            "x" * (MAX_PAYLOAD_BYTES + 1),
            InvalidOta(
                f"payload of {MAX_PAYLOAD_BYTES + 1} characters exceeds {MAX_PAYLOAD_BYTES}"
            ),
            id="str-too-large",
        ),
        pytest.param('{"shared":"x"}', InvalidOta("'shared' is not an object"), id="shared"),
        pytest.param('{"colour":"red"}', NotOta("no sw_* or sf_* attributes"), id="not-ota"),
        pytest.param(
            '{"sw_title":"t"}', NotOta("OTA attributes without sw_version"), id="no-version"
        ),
        pytest.param(
            '{"sw_version":1}', InvalidOta("sw_version is a int, not a string"), id="version-int"
        ),
        pytest.param(
            json.dumps({"sw_version": "v" * (MAX_FIELD_LENGTH + 1)}),
            InvalidOta(f"sw_version is longer than {MAX_FIELD_LENGTH} characters"),
            id="version-too-long",
        ),
        pytest.param(
            '{"sw_version":"v1","sw_title":5}',
            InvalidOta("sw_title is not a string of at most 1024 characters"),
            id="title-int",
        ),
        pytest.param('{"deleted":"sw_url"}', InvalidOta("'deleted' is not a list"), id="del-str"),
        pytest.param(
            '{"deleted":["sw_url",1]}',
            InvalidOta("'deleted' is not a list of strings"),
            id="deleted-non-string",
        ),
        pytest.param(
            '{"deleted":["colour"]}', NotOta("no OTA attributes deleted"), id="deleted-other"
        ),
    ],
)
def test_the_reason_given(payload: object, expected: OtaMessage) -> None:
    assert parse_ota_message(payload) == expected


class _Exploding(Mapping[str, object]):
    """A mapping that fails on any use: what no parser branch expects."""

    def __getitem__(self, key: str) -> object:
        raise RuntimeError("boom")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("boom")

    def __len__(self) -> int:
        raise RuntimeError("boom")

    def __contains__(self, key: object) -> bool:
        raise RuntimeError("boom")


def test_an_unexpected_error_is_named_in_the_reason() -> None:
    assert parse_ota_message(_Exploding()) == InvalidOta("unreadable payload (RuntimeError)")


def test_fields_exactly_at_the_length_limit_are_read() -> None:
    version, title = "v" * MAX_FIELD_LENGTH, "t" * MAX_FIELD_LENGTH
    message = parse_ota_message(json.dumps({"sw_version": version, "sw_title": title}))
    assert message == OtaRequest(version=version, title=title)


def test_a_deleted_sf_alias_names_the_sw_key() -> None:
    message = parse_ota_message('{"deleted":["sf_version","sf_url","sw_url"]}')
    assert message == OtaDeleted(("sw_version", "sw_url"))
