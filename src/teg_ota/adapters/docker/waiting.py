"""Waiting for the controller to exit or turn unhealthy, on the engine's event stream.

Event-driven rather than polled: the watchdog waits here most of its life, and a poll
would either miss short-lived states or keep the engine (and a Pi's CPU) busy.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import docker
import docker.errors
from loguru import logger

from teg_ota.adapters.docker import inspection
from teg_ota.adapters.docker.client import Engine, close_quietly
from teg_ota.domain.model.controller import ControllerExit
from teg_ota.domain.model.errors import RuntimeUnavailable

_STREAM_END_SLACK_S = 0.5
"""An event stream that ends this close to the deadline ended because of the deadline."""

_MAX_STREAM_RESUBSCRIBES = 3


def inspect_container(client: docker.DockerClient, name: str) -> dict[str, Any] | None:
    """The container's attributes, or ``None`` when there is no such container."""
    try:
        attrs: dict[str, Any] = client.api.inspect_container(name)
    except docker.errors.NotFound:
        return None
    return attrs


def wait_for_exit(engine: Engine, name: str, timeout_s: float) -> ControllerExit | None:
    """Block on the engine's event stream until container ``name`` dies or turns unhealthy.

    The stream is subscribed *before* the current state is inspected, so an exit between
    the two is either seen by the inspection or delivered by the stream, never missed. No
    ``since``/``until`` is sent: those are wall-clock times, and a gateway whose clock is
    off from the engine's (a Pi before NTP, a clock stepped mid-wait) would get a stream
    that ends at once or replays the past. A timer closes the stream at the deadline. A
    missing container counts as stopped: ``ControllerExit(exit_code=None)``.

    An exit caused by the engine itself is not the controller's: on a restart or an
    upgrade dockerd first closes its API to new connections, then stops every container
    while open streams still deliver their ``die`` events. So an exit is confirmed with a
    ping on a new connection, and an exit seen after the engine closed the stream early
    counts as the engine's too; both raise :class:`RuntimeUnavailable`, an interruption,
    so no version is blamed for it.
    """
    deadline = time.monotonic() + max(0.0, timeout_s)
    action = f"waiting for {name}"
    resubscribes = 0
    stream_lost = False
    while True:
        remaining = deadline - time.monotonic()
        with engine.session(action) as client:
            stream = client.events(decode=True, filters=inspection.exit_filters(name))
            try:
                attrs = inspect_container(client, name)
                immediate = inspection.exit_from_attrs(attrs)
                if stream_lost and immediate is not None:
                    raise RuntimeUnavailable(
                        f"{action}: the engine closed its event stream and {name} stopped "
                        "meanwhile (an engine restart, not an exit of the controller)"
                    )
                if immediate is not None or remaining <= 0 or attrs is None:
                    if immediate is not None:
                        _confirm_engine_stayed(engine, name, action)
                    return immediate
                closed = threading.Event()
                found = _first_exit(stream, remaining, closed)
            finally:
                close_quietly(stream, None)
        if found is not None:
            _confirm_engine_stayed(engine, name, action)
            return found
        # The stream ended: the deadline, or the engine closed it (shutting down?).
        left = deadline - time.monotonic()
        if closed.is_set() or left <= _STREAM_END_SLACK_S:
            # The container alone (not its image too): what ends a health grace, so it is
            # on the way to UPDATED.
            with engine.session(action) as client:
                return inspection.exit_from_attrs(inspect_container(client, name))
        stream_lost = True
        resubscribes += 1
        if resubscribes > _MAX_STREAM_RESUBSCRIBES:
            raise RuntimeUnavailable(f"{action}: the engine keeps closing its event stream")
        logger.debug("event stream for {} ended early; subscribing again", name)


def _confirm_engine_stayed(engine: Engine, name: str, action: str) -> None:
    """Raise :class:`RuntimeUnavailable` when the engine does not answer a fresh ping:
    ``name``'s exit was then the engine shutting its containers down."""
    if not engine.answers_a_fresh_ping():
        raise RuntimeUnavailable(
            f"{action}: {name} stopped as the engine went away (an engine restart, not an "
            "exit of the controller)"
        )


def _first_exit(
    stream: Iterator[object], timeout_s: float, closed: threading.Event
) -> ControllerExit | None:
    """The first exit ``stream`` reports; a timer closes it (and sets ``closed``) first."""
    timer = threading.Timer(timeout_s, close_quietly, args=(stream, closed))
    timer.daemon = True
    timer.start()
    try:
        for event in stream:
            found = inspection.exit_from_event(event)
            if found is not None:
                return found
    finally:
        timer.cancel()
        close_quietly(stream, None)
    return None
