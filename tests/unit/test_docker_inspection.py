"""The pure reading of engine answers (teg_ota.adapters.docker.inspection), without an engine.

The integration suite proves these against real dockerd answers; here every odd shape an
engine, an old gateway or a hostile Dockerfile may produce is fed in directly.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Any

import pytest

from teg_ota.adapters.docker import inspection
from teg_ota.adapters.docker.inspection import (
    controller_images_from,
    controller_state_from,
    exit_filters,
    exit_from_attrs,
    exit_from_event,
    exit_from_state,
    health_of,
    is_controller_tag,
    is_running,
    label_version,
    labels_of,
    parse_created_s,
    parse_docker_time_ms,
    string_labels,
)
from teg_ota.domain.model.controller import (
    VERSION_LABEL,
    ControllerExit,
    ControllerState,
    Health,
    ImageInfo,
)
from teg_ota.domain.model.errors import InvalidVersion
from teg_ota.domain.model.versions import image_tag, parse_version

PREFIX = "teg-controller-"


def tag_for(version: str) -> str:
    return image_tag(PREFIX, parse_version(version))


class BadLabels:
    """An ``on_bad_label`` callback that records what it was told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def __call__(self, where: str, value: object, exc: InvalidVersion) -> None:
        assert isinstance(exc, InvalidVersion)
        self.calls.append((where, value))


def container(
    *,
    running: bool = True,
    exit_code: object = 0,
    image: object = None,
    image_id: object = "sha256:" + "1" * 64,
    labels: Any = None,
    started: object = "2024-05-06T07:08:09.123456789Z",
    health: object = None,
) -> dict[str, Any]:
    """Attributes shaped like ``inspect_container``'s."""
    state: dict[str, Any] = {"Running": running, "ExitCode": exit_code, "StartedAt": started}
    if health is not None:
        state["Health"] = health
    return {
        "Id": "c" * 64,
        "Image": image_id,
        "State": state,
        "Config": {"Image": tag_for("v1.0.0") if image is None else image, "Labels": labels},
    }


def test_inspection_imports_no_engine_client() -> None:
    """Pure means testable without an engine: only the standard library and the model."""
    path = Path(inspection.__file__)
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = (
            [alias.name for alias in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else []
        )
        for name in names:
            top = name.split(".")[0]
            assert (
                name.startswith("teg_ota.domain.model")
                or top in sys.stdlib_module_names
                or top == "__future__"
            ), name


# --- times ------------------------------------------------------------------------------------


def test_parse_docker_time_ms() -> None:
    assert parse_docker_time_ms("2024-05-06T07:08:09.123456789Z") == 1714979289123
    assert parse_docker_time_ms("2024-05-06T09:08:09.5+02:00") == 1714979289500
    assert parse_docker_time_ms("2024-05-06T07:08:09Z") == 1714979289000
    assert parse_docker_time_ms("0001-01-01T00:00:00Z") is None
    assert parse_docker_time_ms("") is None
    assert parse_docker_time_ms(None) is None


@pytest.mark.parametrize(
    "value",
    [1714979289, "yesterday", "2024-05-06 07:08:09Z", "2024-05-06T07:08:09", b"2024"],
)
def test_parse_docker_time_ms_refuses_what_is_not_rfc_3339(value: object) -> None:
    assert parse_docker_time_ms(value) is None


def test_parse_docker_time_ms_tolerates_surrounding_blanks_and_short_fractions() -> None:
    assert parse_docker_time_ms(" 2024-05-06T07:08:09.1Z\n") == 1714979289100
    assert parse_docker_time_ms("2024-05-06T07:08:09.000999999Z") == 1714979289000


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1714979289, 1714979289.0),
        (1714979289.5, 1714979289.5),
        ("2024-05-06T07:08:09.5Z", 1714979289.5),
        ("garbage", 0.0),
        (None, 0.0),
    ],
)
def test_parse_created_s(value: object, expected: float) -> None:
    assert parse_created_s(value) == expected


# --- health, labels, versions -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({}, Health.NONE),
        ({"Health": None}, Health.NONE),
        ({"Health": {"Status": "starting"}}, Health.STARTING),
        ({"Health": {"Status": "healthy"}}, Health.HEALTHY),
        ({"Health": {"Status": "unhealthy"}}, Health.UNHEALTHY),
        ({"Health": {"Status": "confused"}}, Health.NONE),
        ({"Health": {"Status": ""}}, Health.NONE),
        ({"Health": "unhealthy"}, Health.NONE),
    ],
)
def test_health_of(state: dict[str, Any], expected: Health) -> None:
    assert health_of(state) is expected


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ({}, {}),
        ({"Config": None}, {}),
        ({"Config": {"Labels": None}}, {}),
        ({"Config": {"Labels": ["a=b"]}}, {}),
        ({"Config": "odd"}, {}),
        ({"Config": {"Labels": {"a": "b"}}}, {"a": "b"}),
    ],
)
def test_labels_of(attrs: dict[str, Any], expected: dict[str, str]) -> None:
    assert labels_of(attrs) == expected


def test_string_labels() -> None:
    assert string_labels({"a": 1, 2: None}) == {"a": "1", "2": "None"}


def test_label_version_accepts_valid_versions_only() -> None:
    bad = BadLabels()
    assert label_version("v1.2.3", "here", bad) == "v1.2.3"
    assert label_version("a" * 40, "here", bad) == "a" * 40
    assert label_version(None, "here", bad) is None
    assert label_version("", "here", bad) is None
    assert bad.calls == []
    assert label_version("--upload-pack=x", "here", bad) is None
    assert label_version(7, "there", bad) is None
    assert bad.calls == [("here", "--upload-pack=x"), ("there", 7)]
    assert label_version("--upload-pack=x", "here") is None  # no callback: still no version


# --- the controller's state -------------------------------------------------------------------


def test_state_takes_the_version_from_the_image_label_first() -> None:
    attrs = container(labels={VERSION_LABEL: "v2.0.0"})
    image = {"Config": {"Labels": {VERSION_LABEL: "v3.0.0"}}}
    state = controller_state_from(attrs, image, PREFIX)
    assert state == ControllerState(
        exists=True,
        running=True,
        version="v3.0.0",
        image=tag_for("v1.0.0"),
        started_at_ms=1714979289123,
        health=Health.NONE,
        exit_code=None,
        image_id=f"sha256:{'1' * 64}",
    )


def test_state_falls_back_to_the_container_label_then_the_image_name() -> None:
    attrs = container(labels={VERSION_LABEL: "v2.0.0"})
    assert controller_state_from(attrs, {}, PREFIX).version == "v2.0.0"  # image gone
    assert controller_state_from(attrs, None, PREFIX).version == "v2.0.0"  # no image id
    unlabelled = container(image=tag_for("Release/1.0"))
    assert controller_state_from(unlabelled, {"Config": {}}, PREFIX).version == "Release/1.0"


def test_state_ignores_invalid_labels_and_reports_them() -> None:
    bad = BadLabels()
    attrs = container(labels={VERSION_LABEL: "--evil"})
    image = {"Config": {"Labels": {VERSION_LABEL: "$(reboot)"}}}
    state = controller_state_from(attrs, image, PREFIX, bad)
    assert state.version == "v1.0.0"  # from the image name
    assert bad.calls == [
        (f"image sha256:{'1' * 64}", "$(reboot)"),
        ("the controller container", "--evil"),
    ]


def test_state_has_no_version_for_a_foreign_image_name() -> None:
    for image in ("busybox:latest", "sha256:" + "2" * 64, 42):
        state = controller_state_from(container(image=image), {}, PREFIX)
        assert state.version is None
        assert state.image == (image if isinstance(image, str) else None)


def test_state_of_a_stopped_container_carries_its_exit_code() -> None:
    stopped = controller_state_from(container(running=False, exit_code=137), None, PREFIX)
    assert not stopped.running
    assert stopped.exit_code == 137
    odd = controller_state_from(container(running=False, exit_code="137"), None, PREFIX)
    assert odd.exit_code is None
    running = controller_state_from(container(running=True, exit_code=3), None, PREFIX)
    assert running.exit_code is None  # a running container's last exit code is history


def test_state_of_a_never_started_container_and_its_health() -> None:
    attrs = container(running=False, started="0001-01-01T00:00:00Z", health={"Status": "unhealthy"})
    state = controller_state_from(attrs, None, PREFIX)
    assert state.started_at_ms is None
    assert state.health is Health.UNHEALTHY


def test_state_of_sparse_attributes() -> None:
    assert controller_state_from({}, None, PREFIX) == ControllerState(exists=True)


def test_is_running() -> None:
    assert is_running(container(running=True))
    assert not is_running(container(running=False))
    assert not is_running(None)
    assert not is_running({"State": None})


# --- image names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tag", [tag_for("v1.0.0"), tag_for("Release/1.0"), tag_for("a" * 40)], ids=str
)
def test_is_controller_tag_accepts_the_names_teg_ota_gives(tag: str) -> None:
    assert is_controller_tag(PREFIX, tag)


@pytest.mark.parametrize(
    "tag",
    [
        "busybox:latest",
        f"{PREFIX}v1",
        f"{PREFIX}v1:other",
        f"x/{PREFIX}v1:latest",
        f"{PREFIX}v1@sha256:{'0' * 64}",
        f"{PREFIX}x--1:latest",
        f"{PREFIX}:latest",
        "--evil",
        None,
        7,
    ],
    ids=repr,
)
def test_is_controller_tag_refuses_anything_else(tag: object) -> None:
    assert not is_controller_tag(PREFIX, tag)


def test_controller_images_are_listed_oldest_first_and_foreign_names_skipped() -> None:
    old, new, same_time = tag_for("v1.0.0"), tag_for("v2.0.0"), tag_for("v0.9.0")
    images: list[dict[str, Any]] = [
        {
            "RepoTags": [new, f"{PREFIX}v2.0.0:other"],
            "Created": 200,
            "Labels": {VERSION_LABEL: "v2.0.0", "n": 1},
            "Size": 10,
        },
        {"RepoTags": [old, "busybox:latest"], "Created": 100, "Labels": None, "Size": None},
        {"RepoTags": [same_time], "Created": 100},
        {"RepoTags": None, "Created": 50},
        {"RepoTags": ["<none>:<none>", f"{PREFIX}x--1:latest", 5], "Created": 10},
    ]
    found, skipped = controller_images_from(images, PREFIX)
    assert found == [
        ImageInfo(tag=same_time, created_at=100.0, labels={}, size_bytes=0),
        ImageInfo(tag=old, created_at=100.0, labels={}, size_bytes=0),
        ImageInfo(
            tag=new, created_at=200.0, labels={VERSION_LABEL: "v2.0.0", "n": "1"}, size_bytes=10
        ),
    ]
    assert skipped == [f"{PREFIX}v2.0.0:other", f"{PREFIX}x--1:latest"]
    assert controller_images_from([], PREFIX) == ([], [])


# --- waiting ----------------------------------------------------------------------------------


def test_exit_from_attrs() -> None:
    assert exit_from_attrs(None) == ControllerExit(exit_code=None)
    assert exit_from_attrs(container(running=False, exit_code=3)) == ControllerExit(exit_code=3)
    assert exit_from_attrs(container(running=False, exit_code=None)) == ControllerExit(None)
    assert exit_from_attrs({}) == ControllerExit(exit_code=None)  # no State: not running
    assert exit_from_attrs(container(running=True)) is None
    assert exit_from_attrs(container(running=True, health={"Status": "healthy"})) is None
    assert exit_from_attrs(container(running=True, health={"Status": "unhealthy"})) == (
        ControllerExit(exit_code=None, unhealthy=True)
    )


def test_exit_from_state() -> None:
    assert exit_from_state(ControllerState(exists=False)) == ControllerExit(exit_code=None)
    assert exit_from_state(ControllerState(exists=True, exit_code=1)) == ControllerExit(1)
    assert exit_from_state(ControllerState(exists=True, running=True)) is None
    assert exit_from_state(
        ControllerState(exists=True, running=True, health=Health.UNHEALTHY)
    ) == ControllerExit(exit_code=None, unhealthy=True)


def test_exit_filters_ask_for_the_container_deaths_and_health_changes_only() -> None:
    assert exit_filters("abc") == {
        "type": "container",
        "container": "abc",
        "event": ["die", "health_status"],
    }


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"Action": "die", "Actor": {"Attributes": {"exitCode": "137"}}}, ControllerExit(137)),
        ({"Action": "die", "Actor": {"Attributes": {"exitCode": "x"}}}, ControllerExit(None)),
        ({"Action": "die", "Actor": {"Attributes": {}}}, ControllerExit(None)),
        ({"Action": "die", "Actor": None}, ControllerExit(None)),
        ({"Action": "die", "Actor": "odd"}, ControllerExit(None)),
        ({"Action": "die", "Actor": {"Attributes": ["exitCode"]}}, ControllerExit(None)),
        ({"Action": "health_status: unhealthy"}, ControllerExit(None, unhealthy=True)),
        ({"Action": "health_status:unhealthy"}, ControllerExit(None, unhealthy=True)),
        ({"Action": "health_status: healthy"}, None),
        ({"Action": "health_status: starting"}, None),
        ({"Action": "start"}, None),
        ({"Action": None}, None),
        ({}, None),
        ("die", None),
        (None, None),
    ],
    ids=repr,
)
def test_exit_from_event(event: object, expected: ControllerExit | None) -> None:
    assert exit_from_event(event) == expected


@pytest.mark.parametrize(
    ("message", "refused"),
    [
        ("OCI runtime create failed: unable to apply caps: operation not permitted", True),
        ("Operation not permitted", True),
        ("exec: \"/bin/ctl\": no such file or directory", False),
        ("", False),
    ],
)
def test_a_privilege_refusal_is_told_from_other_start_errors(message: str, refused: bool) -> None:
    assert inspection.refuses_privilege(message) is refused
