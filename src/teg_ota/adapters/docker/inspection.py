"""What the engine's answers mean: container and image attributes, events, names.

Pure functions over the JSON the engine returns (``inspect_container``, ``inspect_image``,
``images``, the event stream), kept apart from the calls that fetch it so that every odd
shape the engine (or whoever created a container) may produce is testable without one.
Everything read here is untrusted: a label is only a version once :func:`parse_version`
accepts it, and a malformed field reads as "unknown", never as an exception.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from teg_ota.domain.model.controller import (
    COMMIT_LABEL,
    VERSION_LABEL,
    ControllerExit,
    ControllerState,
    Health,
    ImageInfo,
)
from teg_ota.domain.model.errors import InvalidVersion
from teg_ota.domain.model.versions import IMAGE_TAG, parse_version, version_from_image

_RFC3339_RE = re.compile(
    r"(?P<base>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(?P<frac>\d+))?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})"
)

EXIT_EVENTS = ("die", "health_status")
"""The container events that can end a wait: an exit, or a health change."""

BadLabel = Callable[[str, object, InvalidVersion], None]
"""Told ``(where, value, error)`` about a version label that names no valid version."""


def parse_docker_time_ms(value: object) -> int | None:
    """Docker's RFC 3339 timestamps (nanoseconds, ``Z``) to Unix milliseconds.

    Returns ``None`` for missing values and for Go's zero time (``0001-01-01T00:00:00Z``,
    what Docker reports for a container that never started).
    """
    if not isinstance(value, str):
        return None
    match = _RFC3339_RE.fullmatch(value.strip())
    if match is None:
        return None
    tz = match["tz"]
    base = datetime.fromisoformat(match["base"] + ("+00:00" if tz == "Z" else tz))
    if base.year <= 1:
        return None
    frac = match["frac"] or ""
    nanos = int((frac + "000000000")[:9])
    return int(base.timestamp()) * 1000 + nanos // 1_000_000


def parse_created_s(value: object) -> float:
    """An image's ``Created``: Unix seconds from ``images()``, RFC 3339 from ``inspect``."""
    if isinstance(value, int | float):
        return float(value)
    ms = parse_docker_time_ms(value)
    return ms / 1000 if ms is not None else 0.0


def health_of(state: Mapping[str, Any]) -> Health:
    """A container ``State``'s health; no (or an unknown) status means no HEALTHCHECK."""
    health = state.get("Health") or {}
    status = health.get("Status") if isinstance(health, Mapping) else None
    try:
        return Health(status) if status else Health.NONE
    except ValueError:
        return Health.NONE


def labels_of(attrs: Mapping[str, Any]) -> Mapping[str, Any]:
    """The ``Config.Labels`` of inspected image or container attributes (may be null)."""
    config = attrs.get("Config") or {}
    labels = config.get("Labels") if isinstance(config, Mapping) else None
    return labels if isinstance(labels, Mapping) else {}


def string_labels(labels: Mapping[Any, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in labels.items()}


def label_version(value: object, where: str, on_bad: BadLabel | None = None) -> str | None:
    """The version a ``VERSION_LABEL`` value names, or ``None`` when it names none.

    Labels are whatever the image's Dockerfile (or whoever created the container) wrote:
    untrusted input, only used once :func:`parse_version` accepts it; ``on_bad`` hears of an
    invalid one (the runtime logs it once: the watchdog inspects the controller often).
    """
    if value is None or value == "":
        return None
    try:
        return parse_version(value).value
    except InvalidVersion as exc:
        if on_bad is not None:
            on_bad(where, value, exc)
        return None


def controller_state_from(
    attrs: Mapping[str, Any],
    image_attrs: Mapping[str, Any] | None,
    image_prefix: str,
    on_bad_label: BadLabel | None = None,
) -> ControllerState:
    """The controller's state from its inspected attributes and its image's.

    The version comes from the image's label (what was built), else the container's label,
    else the image name (containers the old gateway started carry no labels at all).
    """
    state: Mapping[str, Any] = attrs.get("State") or {}
    config: Mapping[str, Any] = attrs.get("Config") or {}
    image_name = config.get("Image")
    image_name = image_name if isinstance(image_name, str) else None
    version: str | None = None
    if image_attrs is not None:
        version = label_version(
            labels_of(image_attrs).get(VERSION_LABEL), f"image {attrs.get('Image')}", on_bad_label
        )
    if not version:
        version = label_version(
            labels_of(attrs).get(VERSION_LABEL), "the controller container", on_bad_label
        )
    if not version and image_name is not None:
        version = version_from_image(image_prefix, image_name)
    running = bool(state.get("Running"))
    exit_code = state.get("ExitCode")
    commit = labels_of(attrs).get(COMMIT_LABEL)
    return ControllerState(
        exists=True,
        running=running,
        version=version or None,
        image=image_name,
        started_at_ms=parse_docker_time_ms(state.get("StartedAt")),
        health=health_of(state),
        exit_code=None if running or not isinstance(exit_code, int) else exit_code,
        commit=commit if isinstance(commit, str) and commit else None,
        image_id=image_id if isinstance(image_id := attrs.get("Image"), str) else None,
    )


def is_running(attrs: Mapping[str, Any] | None) -> bool:
    return attrs is not None and bool((attrs.get("State") or {}).get("Running"))


def is_controller_tag(image_prefix: str, tag: object) -> bool:
    """``tag`` is ``<prefix><version>:latest`` for a valid version, nothing else."""
    return (
        isinstance(tag, str)
        and tag.startswith(image_prefix)
        and tag.endswith(":" + IMAGE_TAG)
        and "/" not in tag
        and "@" not in tag
        and version_from_image(image_prefix, tag) is not None
    )


def controller_images_from(
    images: Iterable[Mapping[str, Any]], image_prefix: str
) -> tuple[list[ImageInfo], list[str]]:
    """The controller images among ``images()`` (oldest first), and the names skipped.

    A skipped name has the prefix but is not a name teg-ota gives (another tag than
    ``:latest``, a name no version maps to): not ours to list, keep or remove.
    """
    found: list[ImageInfo] = []
    skipped: list[str] = []
    for image in images:
        labels = image.get("Labels") or {}
        for repo_tag in image.get("RepoTags") or ():
            if not isinstance(repo_tag, str) or not repo_tag.startswith(image_prefix):
                continue
            if not is_controller_tag(image_prefix, repo_tag):
                skipped.append(repo_tag)
                continue
            found.append(
                ImageInfo(
                    tag=repo_tag,
                    created_at=parse_created_s(image.get("Created")),
                    labels=string_labels(labels),
                    size_bytes=int(image.get("Size") or 0),
                )
            )
    found.sort(key=lambda info: (info.created_at, info.tag))
    return found, skipped


def exit_from_attrs(attrs: Mapping[str, Any] | None) -> ControllerExit | None:
    """Whether inspected attributes already answer a wait (``None``: still running fine)."""
    if attrs is None:
        return ControllerExit(exit_code=None)
    state: Mapping[str, Any] = attrs.get("State") or {}
    if not state.get("Running"):
        code = state.get("ExitCode")
        return ControllerExit(exit_code=code if isinstance(code, int) else None)
    if health_of(state) is Health.UNHEALTHY:
        return ControllerExit(exit_code=None, unhealthy=True)
    return None


def exit_from_state(state: ControllerState) -> ControllerExit | None:
    """Whether the controller's state answers a wait (``None``: still running fine)."""
    if not state.exists:
        return ControllerExit(exit_code=None)
    if not state.running:
        return ControllerExit(exit_code=state.exit_code)
    if state.health is Health.UNHEALTHY:
        return ControllerExit(exit_code=None, unhealthy=True)
    return None


def exit_filters(container: str) -> dict[str, Any]:
    """The event-stream filters for the events that can end a wait on ``container``."""
    return {"type": "container", "container": container, "event": list(EXIT_EVENTS)}


def exit_from_event(event: object) -> ControllerExit | None:
    """The exit a decoded engine event reports, or ``None`` for any other event."""
    if not isinstance(event, Mapping):
        return None
    action = event.get("Action")
    if not isinstance(action, str):
        return None
    if action == "die":
        actor = event.get("Actor") or {}
        attributes = actor.get("Attributes") or {} if isinstance(actor, Mapping) else {}
        raw = attributes.get("exitCode") if isinstance(attributes, Mapping) else None
        try:
            code: int | None = int(raw) if raw is not None else None
        except (TypeError, ValueError):
            code = None
        return ControllerExit(exit_code=code)
    if action.startswith("health_status") and action.split(":", 1)[-1].strip() == (
        Health.UNHEALTHY.value
    ):
        return ControllerExit(exit_code=None, unhealthy=True)
    return None


_PRIVILEGE_REFUSALS = ("unable to apply caps", "operation not permitted")


def refuses_privilege(engine_message: str) -> bool:
    """The engine's start error says it cannot grant a privileged container's capabilities
    (seen as "unable to apply caps: operation not permitted" where the host's capability
    bounding set lacks some)."""
    text = engine_message.lower()
    return any(marker in text for marker in _PRIVILEGE_REFUSALS)
