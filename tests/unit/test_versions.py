"""Version validation (network input that reaches git and Docker) and image naming."""

from __future__ import annotations

import base64
import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from teg_ota.domain.model.errors import InvalidVersion
from teg_ota.domain.model.versions import (
    MAX_IMAGE_NAME_LENGTH,
    Version,
    VersionKind,
    image_repository,
    image_tag,
    parse_version,
    version_from_image,
)

PREFIX = "teg-controller-"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
DOCKER_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")


def _encoded_name(text: str) -> str:
    """``<prefix>x--<base32>``, built by hand for names image_tag may or may not produce."""
    encoded = base64.b32encode(text.encode("utf-8")).decode("ascii").rstrip("=").lower()
    return f"{PREFIX}x--{encoded}"


def _rejection(raw: object) -> str:
    with pytest.raises(InvalidVersion) as caught:
        parse_version(raw)
    return str(caught.value)


# --------------------------------------------------------------------------- accepted


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("v1.2.3", id="semver-tag"),
        pytest.param("release-2024.01", id="dated-release"),
        pytest.param("feature/x", id="slash-namespace"),
        pytest.param("v1.0.0+build.5", id="build-metadata"),
        pytest.param("1.0_rc1", id="underscore"),
        pytest.param("UPPER", id="upper-case"),
        pytest.param("a", id="single-char"),
        pytest.param("head", id="lower-head-is-a-tag"),
        pytest.param("refs", id="refs-alone-is-a-tag"),
        pytest.param("a" * 128, id="max-length"),
        pytest.param("a" * 39, id="39-hex-is-a-tag"),
        pytest.param("a" * 41, id="41-hex-is-a-tag"),
    ],
)
def test_parse_version_accepts_tag(raw: str) -> None:
    version = parse_version(raw)

    assert version == Version(raw, VersionKind.TAG)
    assert not version.is_commit
    assert str(version) == raw


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(COMMIT, COMMIT, id="lower-hex"),
        pytest.param(COMMIT.upper(), COMMIT, id="upper-hex-normalised"),
        pytest.param("ABCDEF" + COMMIT[6:], "abcdef" + COMMIT[6:], id="mixed-case-hex"),
        pytest.param("0" * 40, "0" * 40, id="all-digits"),
    ],
)
def test_parse_version_accepts_full_commit_hash(raw: str, expected: str) -> None:
    version = parse_version(raw)

    assert version == Version(expected, VersionKind.COMMIT)
    assert version.is_commit


# --------------------------------------------------------------------------- rejected


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("--upload-pack=x", id="git-option"),
        pytest.param("-v", id="short-option"),
        pytest.param("v1;rm -rf /", id="shell-separator"),
        pytest.param("$(reboot)", id="command-substitution"),
        pytest.param("`id`", id="backticks"),
        pytest.param("../../etc", id="path-escape"),
        pytest.param("a..b", id="double-dot"),
        pytest.param("v1@{0}", id="reflog"),
        pytest.param("HEAD~1", id="ancestor"),
        pytest.param("v1^", id="parent"),
        pytest.param("v1:x", id="colon"),
        pytest.param("v1?", id="question-mark"),
        pytest.param("v1*", id="asterisk"),
        pytest.param("v1[", id="bracket"),
        pytest.param("a\\b", id="backslash"),
        pytest.param("x.lock", id="lock-suffix"),
        pytest.param("a/b.lock", id="lock-component"),
        pytest.param("a.lock/b", id="lock-inner-component"),
        pytest.param("/a", id="leading-slash"),
        pytest.param("a/", id="trailing-slash"),
        pytest.param("a//b", id="double-slash"),
        pytest.param(".hidden", id="leading-dot"),
        pytest.param("a/.b", id="dot-component"),
        pytest.param("ends.", id="trailing-dot"),
        pytest.param("HEAD", id="HEAD"),
        pytest.param("HEAD/x", id="HEAD-path"),
        pytest.param("refs/tags/x", id="ref-path"),
        pytest.param("v1 2", id="space"),
        pytest.param("v1\t", id="tab"),
        pytest.param("v1\n", id="newline"),
        pytest.param("v1\x00", id="nul"),
        pytest.param("v1\x7f", id="del"),
        pytest.param("v1\x1b[31m", id="ansi-escape"),
        pytest.param("vé", id="non-ascii-letter"),
        pytest.param("v1\u202e", id="bidi-override"),
        pytest.param("", id="empty"),
        pytest.param("a" * 129, id="one-too-long"),
        pytest.param("a" * 10_000, id="10-kB"),
        pytest.param("\n" * 10_000, id="10-kB-newlines"),
        pytest.param(None, id="None"),
        pytest.param(1, id="int"),
        pytest.param(b"v1", id="bytes"),
        pytest.param(["v1"], id="list"),
    ],
)
def test_parse_version_rejects_with_operator_readable_message(raw: object) -> None:
    message = _rejection(raw)

    assert "version" in message
    assert message.isascii()
    assert message.isprintable(), "no raw control characters may reach sw_error or the log"
    assert len(message) < 200, "the message quotes a short excerpt, never the whole input"


def test_rejection_message_names_the_rule_that_was_broken() -> None:
    assert "'..'" in _rejection("a..b")
    assert "'-'" in _rejection("--upload-pack=x")
    assert "'.lock'" in _rejection("x.lock")
    assert "ref path" in _rejection("refs/tags/x")
    assert "128" in _rejection("a" * 10_000)
    assert "NoneType" in _rejection(None)


def test_rejection_message_quotes_input_with_control_characters_replaced() -> None:
    message = _rejection("v1\nv2")

    assert "'v1?v2'" in message


# --------------------------------------------------------------------------- image naming


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("v1.2.3", "teg-controller-v1.2.3:latest", id="seed-tag-name"),
        pytest.param(COMMIT, f"teg-controller-{COMMIT}:latest", id="seed-commit-name"),
        pytest.param(COMMIT.upper(), f"teg-controller-{COMMIT}:latest", id="upper-commit"),
        pytest.param("release-2024.01", "teg-controller-release-2024.01:latest", id="dashes"),
        pytest.param("1.0_rc1", "teg-controller-1.0_rc1:latest", id="underscore"),
        pytest.param(
            "Release/1.0", "teg-controller-x--kjswyzlbonss6mjoga:latest", id="documented-example"
        ),
    ],
)
def test_image_tag_exact_names(raw: str, expected: str) -> None:
    assert image_tag(PREFIX, parse_version(raw)) == expected


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("UPPER", id="upper-case"),
        pytest.param("feature/x", id="slash"),
        pytest.param("v1.0.0+build.5", id="plus"),
        pytest.param("a___b", id="underscore-run"),
        pytest.param("a-.b", id="dash-then-dot"),
        pytest.param("x--abc", id="starts-with-marker"),
        pytest.param("x--", id="marker-alone"),
    ],
)
def test_image_tag_encodes_names_docker_cannot_take_as_is(raw: str) -> None:
    tag = image_tag(PREFIX, parse_version(raw))
    repository, _, suffix = tag.rpartition(":")

    assert suffix == "latest"
    assert repository.startswith(PREFIX + "x--")
    assert repository != PREFIX + raw
    assert DOCKER_COMPONENT.fullmatch(repository)
    assert version_from_image(PREFIX, tag) == raw


def test_tag_starting_with_marker_cannot_collide_with_an_encoded_name() -> None:
    # "x--kjswyzlbonss6mjoga" is itself a valid tag; used plainly it would read back
    # as "Release/1.0".
    spoof = parse_version("x--kjswyzlbonss6mjoga")
    real = parse_version("Release/1.0")

    assert image_tag(PREFIX, spoof) != image_tag(PREFIX, real)
    assert version_from_image(PREFIX, image_tag(PREFIX, spoof)) == spoof.value


def test_longest_version_fits_docker_name_limit() -> None:
    version = parse_version("A" * 128)

    assert len(image_repository(PREFIX, version)) <= MAX_IMAGE_NAME_LENGTH


def test_image_repository_too_long_for_docker_is_refused() -> None:
    with pytest.raises(InvalidVersion, match="longer than 255"):
        image_repository("p" * 200, parse_version("A" * 128))


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        pytest.param("teg-controller-v1.2.3", "v1.2.3", id="name"),
        pytest.param("teg-controller-v1.2.3:latest", "v1.2.3", id="name-tag"),
        pytest.param("teg-controller-v1.2.3:other", "v1.2.3", id="other-tag"),
        pytest.param("registry:5000/teg-controller-v1.2.3:latest", "v1.2.3", id="registry-port"),
        pytest.param("registry:5000/teg-controller-v1.2.3", "v1.2.3", id="registry-no-tag"),
        pytest.param("docker.io/library/teg-controller-v1:latest", "v1", id="library-path"),
        pytest.param("teg-controller-v1:latest@sha256:" + "0" * 64, "v1", id="with-digest"),
        pytest.param(f"teg-controller-{COMMIT}:latest", COMMIT, id="commit"),
        pytest.param("teg-controller-x--kjswyzlbonss6mjoga:latest", "Release/1.0", id="encoded"),
        pytest.param("busybox:latest", None, id="other-image"),
        pytest.param("eclipse-mosquitto:2", None, id="other-image-with-dash"),
        pytest.param("teg-controller-", None, id="prefix-only"),
        pytest.param("teg-controller-:latest", None, id="prefix-only-tagged"),
        pytest.param("teg-controller:latest", None, id="prefix-without-dash"),
        pytest.param("my-teg-controller-v1:latest", None, id="prefix-not-at-start"),
        pytest.param("teg-controller-v1.2.3/other:latest", None, id="prefix-in-path-only"),
        pytest.param("teg-controller-V1:latest", None, id="upper-case-plain"),
        pytest.param("teg-controller-a..b:latest", None, id="not-a-docker-component"),
        pytest.param("teg-controller-x--", None, id="marker-without-payload"),
        pytest.param("teg-controller-x--!!!:latest", None, id="garbage-after-marker"),
        pytest.param("teg-controller-x--KJSW:latest", None, id="upper-case-base32"),
        pytest.param("teg-controller-x--1890:latest", None, id="digits-outside-base32"),
        pytest.param("teg-controller-x--a:latest", None, id="impossible-base32-length"),
        pytest.param("teg-controller-x--abc:latest", None, id="impossible-base32-length-3"),
        pytest.param("teg-controller-x--74:latest", None, id="base32-of-non-utf8"),
        pytest.param("", None, id="empty"),
    ],
)
def test_version_from_image(image: str, expected: str | None) -> None:
    assert version_from_image(PREFIX, image) == expected


@pytest.mark.parametrize(
    "image",
    [
        pytest.param(_encoded_name("--upload-pack=x"), id="encoded-git-option"),
        pytest.param(_encoded_name("HEAD"), id="encoded-HEAD"),
        pytest.param(_encoded_name("a b"), id="encoded-space"),
        pytest.param(_encoded_name("v\u00e9"), id="encoded-non-ascii"),
        pytest.param(_encoded_name("v1.2.3"), id="encoded-form-of-a-plain-name"),
        pytest.param(f"{PREFIX}x--if", id="non-canonical-base32-padding-bits"),
        pytest.param(f"{PREFIX}a.lock", id="plain-invalid-version"),
    ],
)
def test_version_from_image_refuses_names_image_tag_never_produces(image: str) -> None:
    """The reverse mapping must not invent versions: the Docker adapter relies on it to
    refuse foreign image names, and whatever it returns is taken as the running version."""
    assert version_from_image(PREFIX, image) is None
    assert version_from_image(PREFIX, image + ":latest") is None


# --------------------------------------------------------------------------- properties

TAG_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._+/-"
LOWER_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789._-"


def _valid(raw: str) -> bool:
    try:
        parse_version(raw)
    except InvalidVersion:
        return False
    return True


_tags = st.one_of(
    st.text(TAG_ALPHABET, min_size=1, max_size=128),
    st.text(LOWER_ALPHABET, min_size=1, max_size=64),
).filter(_valid)
_commits = st.text("0123456789abcdefABCDEF", min_size=40, max_size=40)
versions = st.one_of(_tags, _commits).map(parse_version)


@settings(max_examples=200, deadline=None)
@given(versions)
def test_property_image_name_round_trips(version: Version) -> None:
    tag = image_tag(PREFIX, version)

    assert version_from_image(PREFIX, tag) == version.value
    assert version_from_image(PREFIX, "registry:5000/" + tag) == version.value


@settings(max_examples=200, deadline=None)
@given(versions)
def test_property_image_repository_is_a_docker_reference_component(version: Version) -> None:
    repository = image_repository(PREFIX, version)

    assert DOCKER_COMPONENT.fullmatch(repository)
    assert DOCKER_COMPONENT.fullmatch(repository[len(PREFIX) :])
    assert len(repository) <= MAX_IMAGE_NAME_LENGTH


@settings(max_examples=200, deadline=None)
@given(versions, versions)
def test_property_distinct_versions_get_distinct_images(a: Version, b: Version) -> None:
    assume(a.value != b.value)

    assert image_tag(PREFIX, a) != image_tag(PREFIX, b)


@settings(max_examples=200, deadline=None)
@given(versions)
def test_property_parse_version_is_idempotent(version: Version) -> None:
    assert parse_version(version.value) == version


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=200), st.text(TAG_ALPHABET + "@{}~^:?*[\\ ", max_size=60)))
def test_property_any_string_is_accepted_safely_or_rejected_typed(raw: str) -> None:
    try:
        version = parse_version(raw)
    except InvalidVersion as exc:
        assert str(exc).isprintable()
        assert str(exc).isascii()
        return
    assert re.fullmatch(r"[A-Za-z0-9._+/-]+", version.value)
    assert not version.value.startswith(("-", "/", "."))
    assert ".." not in version.value
