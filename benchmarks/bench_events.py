"""What the update benchmark observes: OTA states as the gateway reports them (an in-memory
telemetry sink), the engine's container events, and the ticks of a runner-style watchdog
loop, each with its own timestamps."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import docker
from loguru import logger

from teg_ota.api import Gateway, OtaReport
from teg_ota.ports.container_runtime import (
    ContainerRuntime,
    ContainerRuntimeError,
    ControllerExit,
)

EVENT_TIMEOUT_S = 20.0
WATCHER_REARM_S = 2.0
"""How long one ``wait_for_exit`` of the runner-style loop blocks (the runner uses 5 s;
shorter here only so the loop stops sooner at the end; detection is event-driven)."""


class BenchmarkError(RuntimeError):
    """The benchmark could not measure what it set out to (setup or an update failed)."""


# ------------------------------------------------------------------------ telemetry sink


@dataclass(frozen=True, slots=True)
class StampedReport:
    mono: float
    wall_ns: int
    report: OtaReport


class RecordingSink:
    """A TelemetrySink that keeps everything in memory with monotonic and wall timestamps."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reports: list[StampedReport] = []
        self.telemetry: list[tuple[float, dict[str, object]]] = []
        self.attribute_requests = 0

    def publish_ota_state(self, report: OtaReport) -> None:
        stamp = StampedReport(time.monotonic(), time.time_ns(), report)
        with self._lock:
            self._reports.append(stamp)

    def publish_telemetry(self, values: Mapping[str, object]) -> None:
        with self._lock:
            self.telemetry.append((time.monotonic(), dict(values)))

    def request_ota_attributes(self) -> None:
        with self._lock:
            self.attribute_requests += 1

    def mark(self) -> int:
        with self._lock:
            return len(self._reports)

    def reports_since(self, mark: int) -> list[StampedReport]:
        with self._lock:
            return list(self._reports[mark:])


# ------------------------------------------------------------------------- docker events


@dataclass(frozen=True, slots=True)
class ContainerEvent:
    action: str
    time_ns: int
    container_id: str
    exit_code: str | None
    name: str = ""


class EventCollector:
    """Follows the engine's ``die``/``start`` events of some container names in a thread
    (the controller's name and the temporary one its replacement is created under)."""

    def __init__(self, client: docker.DockerClient, names: Sequence[str]) -> None:
        self._client = client
        self._names = tuple(names)
        self._name = ", ".join(self._names)
        self._events: list[ContainerEvent] = []
        self._cond = threading.Condition()
        self._stream: Any = None
        self._thread: threading.Thread | None = None
        self._closing = False

    def start(self) -> None:
        # events() returns once the engine answered, i.e. once the subscription exists.
        self._stream = self._client.events(
            decode=True,
            filters={
                "type": "container",
                "event": ["die", "start"],
                "container": list(self._names),
            },
        )
        self._thread = threading.Thread(target=self._follow, name="bench-events", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        try:
            for raw in self._stream:
                event = self._parse(raw)
                if event is None:
                    continue
                with self._cond:
                    self._events.append(event)
                    self._cond.notify_all()
        except Exception as exc:  # noqa: BLE001 - closing the stream ends the loop this way
            if not self._closing:
                logger.warning("docker event stream ended: {}", exc)

    def _parse(self, raw: object) -> ContainerEvent | None:
        if not isinstance(raw, Mapping):
            return None
        actor = raw.get("Actor") or {}
        attributes = actor.get("Attributes") or {}
        name = attributes.get("name")
        if name not in self._names:
            return None
        action = raw.get("Action") or raw.get("status")
        time_ns = raw.get("timeNano")
        if not isinstance(action, str) or not isinstance(time_ns, int):
            return None
        return ContainerEvent(
            action=action,
            time_ns=time_ns,
            container_id=str(actor.get("ID") or raw.get("id") or ""),
            exit_code=attributes.get("exitCode"),
            name=str(name),
        )

    def events_between(self, start_ns: int, end_ns: int | None = None) -> list[ContainerEvent]:
        with self._cond:
            return [
                e
                for e in self._events
                if e.time_ns >= start_ns and (end_ns is None or e.time_ns <= end_ns)
            ]

    def wait_for(
        self,
        action: str,
        after_ns: int,
        timeout_s: float = EVENT_TIMEOUT_S,
        name: str | None = None,
    ) -> ContainerEvent:
        """The first ``action`` event at or after ``after_ns`` (of ``name``, when given),
        waiting for it if needed."""

        def found() -> ContainerEvent | None:
            for event in self._events:
                if (
                    event.action == action
                    and event.time_ns >= after_ns
                    and (name is None or event.name == name)
                ):
                    return event
            return None

        with self._cond:
            if not self._cond.wait_for(lambda: found() is not None, timeout_s):
                raise BenchmarkError(f"no {action!r} event for {self._name} within {timeout_s} s")
            event = found()
            assert event is not None  # noqa: S101 - wait_for guarantees it
            return event

    def close(self) -> None:
        self._closing = True
        if self._stream is not None:
            with contextlib.suppress(Exception):
                self._stream.close()
        if self._thread is not None:
            self._thread.join(timeout=5)


# --------------------------------------------------------------- runner-style watchdog


@dataclass(frozen=True, slots=True)
class Tick:
    wall_ns: int
    exit: ControllerExit | None
    acted: bool


class RunnerStyleLoop:
    """What ``teg-ota run`` does for the watchdog, in one thread: block in
    ``wait_for_exit``; whenever it returns, tick the watchdog; while the controller is down,
    sleep until the backoff allows the restart, then tick again."""

    def __init__(self, gateway: Gateway, runtime: ContainerRuntime) -> None:
        self._gateway = gateway
        self._runtime = runtime
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._ticks: list[Tick] = []
        self._thread = threading.Thread(target=self._run, name="bench-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wait_for_restart(
        self, since_ns: int, timeout_s: float = EVENT_TIMEOUT_S
    ) -> tuple[Tick, Tick]:
        """The tick that noticed an exit at or after ``since_ns`` and the later one that
        restarted the controller (a tick is recorded once the watchdog call returned)."""

        def found() -> tuple[Tick, Tick] | None:
            ticks = [t for t in self._ticks if t.wall_ns >= since_ns]
            noticed = next((t for t in ticks if t.exit is not None), None)
            if noticed is None:
                return None
            restarted = next((t for t in ticks if t.acted and t.wall_ns >= noticed.wall_ns), None)
            return None if restarted is None else (noticed, restarted)

        with self._cond:
            if not self._cond.wait_for(lambda: found() is not None, timeout_s):
                raise BenchmarkError("the watchdog loop did not record the restart")
            pair = found()
            assert pair is not None  # noqa: S101 - wait_for guarantees it
            return pair

    def _run(self) -> None:
        watchdog = self._gateway.watchdog
        while not self._stop.is_set():
            try:
                exited = self._runtime.wait_for_exit(WATCHER_REARM_S)
            except ContainerRuntimeError as exc:
                logger.warning("runner-style loop: {}", exc)
                self._stop.wait(WATCHER_REARM_S)
                continue
            noticed = time.time_ns()
            acted = watchdog.restart_controller_if_needed()
            with self._cond:
                self._ticks.append(Tick(noticed, exited, acted))
                self._cond.notify_all()
            if exited is None:
                continue
            delay = watchdog.seconds_until_restart()
            self._stop.wait(delay if delay > 0 else (0.0 if acted else 0.1))

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=WATCHER_REARM_S + 10)
