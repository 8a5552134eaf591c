"""Names and labels are checked before they reach the engine (adapters.docker.validation)."""

from __future__ import annotations

import pytest

from teg_ota.adapters.docker.validation import (
    MAX_LABEL_KEY,
    MAX_LABEL_VALUE,
    MAX_LABELS,
    check_tag,
    checked_labels,
    is_image_reference,
)
from teg_ota.domain.model.controller import COMMIT_LABEL, VERSION_LABEL
from teg_ota.domain.model.errors import BuildFailed, StartFailed

PREFIX = "teg-controller-"


def test_check_tag_accepts_controller_names_and_refuses_others_with_the_given_error() -> None:
    check_tag(PREFIX, f"{PREFIX}v1.0.0:latest", BuildFailed)
    with pytest.raises(StartFailed, match=r"refusing image name 'busybox:latest': expected"):
        check_tag(PREFIX, "busybox:latest", StartFailed)
    with pytest.raises(BuildFailed, match=r"expected teg-controller-<version>:latest"):
        check_tag(PREFIX, "--evil", BuildFailed)


def test_check_tag_shows_a_hostile_name_shortened_on_one_line() -> None:
    with pytest.raises(BuildFailed) as caught:
        check_tag(PREFIX, "x\n" * 1000, BuildFailed)
    assert "\n" not in str(caught.value)
    assert len(str(caught.value)) < 500


def test_checked_labels_passes_ordinary_labels_through() -> None:
    labels = {
        VERSION_LABEL: "Release/1.0",
        COMMIT_LABEL: "a" * 40,
        "org.opencontainers.image.source": "https://example.invalid/x.git",
        "quoted": 'it\'s "fine" $HOME \\ `x`',  # the engine takes values verbatim
        "empty": "",
        "Upper_case-key/with.dots": "ok",
    }
    assert checked_labels(labels) == labels
    assert checked_labels({}) == {}


@pytest.mark.parametrize(
    "key",
    [
        "",
        "has space",
        "a=b",
        'a"b',
        "a\nb",
        "-leading",
        "trailing.",
        "ü",
        "k" * (MAX_LABEL_KEY + 1),
    ],
    ids=repr,
)
def test_checked_labels_refuses_bad_keys(key: str) -> None:
    with pytest.raises(BuildFailed, match="refusing image label key"):
        checked_labels({key: "v"})


@pytest.mark.parametrize(
    "value",
    ["two\nlines", "cr\r", "nul\0", "tab\t", "esc\x1b[31m", "del\x7f", "sep\u2028"],
    ids=repr,
)
def test_checked_labels_refuses_control_characters_in_values(value: str) -> None:
    with pytest.raises(BuildFailed, match="contains control characters"):
        checked_labels({"k": value})


def test_checked_labels_refuses_long_or_non_text_values_and_too_many_labels() -> None:
    with pytest.raises(BuildFailed, match="not a short text"):
        checked_labels({"k": "v" * (MAX_LABEL_VALUE + 1)})
    with pytest.raises(BuildFailed, match="not a short text"):
        checked_labels({"k": 1})  # type: ignore[dict-item]
    with pytest.raises(BuildFailed, match="refusing image label key"):
        checked_labels({1: "v"})  # type: ignore[dict-item]
    with pytest.raises(BuildFailed, match=f"at most {MAX_LABELS}"):
        checked_labels({f"k{i}": "v" for i in range(MAX_LABELS + 1)})


@pytest.mark.parametrize(
    "ref",
    ["sha256:" + "0" * 64, "busybox", "someone-else:1.0", "org/app/x:v1.2_3", "a__b-c.d:latest"],
)
def test_is_image_reference_accepts_ids_and_plain_names(ref: str) -> None:
    assert is_image_reference(ref)


@pytest.mark.parametrize(
    "ref",
    [
        "",
        "../x",
        "a/../b",
        "Upper",
        "a:b:c",
        "a:",
        "x" * 256,
        "a b",
        "reg:5000/x",
        "x@sha256:0",
        None,
        1,
    ],
    ids=repr,
)
def test_is_image_reference_refuses_anything_else(ref: object) -> None:
    assert not is_image_reference(ref)
