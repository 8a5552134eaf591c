"""Update downtime benchmark: what an over-the-air update and a crash cost in real time.

Drives the REAL adapters through the library API (``teg_ota.api.build_container``) against
the real dockerd and a real local Git repository, with an in-memory telemetry sink that
timestamps every OTA state. Measured, never asserted (project rule): the script prints
figures and exits 0 when it could measure them.

1. swap downtime: old controller's ``die`` event -> new controller's ``start`` event
   (Docker's own ``timeNano``), for updates whose image had to be built;
2. update phases: prepare (DOWNLOADING -> VERIFIED: fetch, reset, build), swap (UPDATING ->
   new ``start``), health grace (new ``start`` -> UPDATED), housekeeping (UPDATED -> return);
3. cached update (image already built): total and downtime;
4. restart latency: ``docker kill`` the controller while a runner-style loop calls the
   watchdog whenever ``wait_for_exit`` returns; detection (``die`` -> watchdog tick) and
   kill -> running;
5. disk: the controller images kept after building more versions than the GC keeps.

Usage: ``bash scripts/bench.sh [--rounds N] [--json] [--health-grace S] [--verbose]``.
Needs a Docker engine and the local base image ``teg-ota-test-busybox:latest``
(``scripts/ensure-infra.sh``). Everything it creates (container, images, temp dir) is
removed at the end, also on Ctrl-C or an error.
"""

# The git CLI is called with fixed argument lists (no shell, no user input).
# ruff: noqa: S603, S607

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import docker
import docker.errors
from loguru import logger

from teg_ota.api import (
    Container,
    Gateway,
    OtaReport,
    Outcome,
    Settings,
    build_container,
    load_settings,
)
from teg_ota.ports.container_runtime import (
    ContainerRuntime,
    ContainerRuntimeError,
    ControllerExit,
)

BASE_IMAGE = "teg-ota-test-busybox:latest"
ALTERNATING = ("v1", "v2")
"""The two versions the update rounds alternate between."""
GC_VERSIONS = ("v3", "v4", "v5")
"""Built one after the other at the end, so more images exist than the GC keeps."""
KEEP_OLDER_IMAGES = 1

DOCKERFILE = """\
FROM {base}
COPY VERSION /VERSION
CMD ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1 & wait $!; done"]
"""
"""A controller that runs until SIGTERM and exits at once on it (``sleep`` in the background,
so the trap runs without waiting for the current ``sleep`` to end)."""

EVENT_TIMEOUT_S = 20.0
WATCHER_REARM_S = 2.0
"""How long one ``wait_for_exit`` of the runner-style loop blocks (the runner uses 5 s;
shorter here only so the loop stops sooner at the end; detection is event-driven)."""

_GIT_ENV = {
    "GIT_AUTHOR_NAME": "teg-ota bench",
    "GIT_AUTHOR_EMAIL": "bench@teg-ota.invalid",
    "GIT_COMMITTER_NAME": "teg-ota bench",
    "GIT_COMMITTER_EMAIL": "bench@teg-ota.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
}


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


class EventCollector:
    """Follows the engine's ``die``/``start`` events of one container name in a thread."""

    def __init__(self, client: docker.DockerClient, container_name: str) -> None:
        self._client = client
        self._name = container_name
        self._events: list[ContainerEvent] = []
        self._cond = threading.Condition()
        self._stream: Any = None
        self._thread: threading.Thread | None = None
        self._closing = False

    def start(self) -> None:
        # events() returns once the engine answered, i.e. once the subscription exists.
        self._stream = self._client.events(
            decode=True,
            filters={"type": "container", "event": ["die", "start"], "container": self._name},
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
        if attributes.get("name") != self._name:
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
        )

    def events_between(self, start_ns: int, end_ns: int | None = None) -> list[ContainerEvent]:
        with self._cond:
            return [
                e
                for e in self._events
                if e.time_ns >= start_ns and (end_ns is None or e.time_ns <= end_ns)
            ]

    def wait_for(
        self, action: str, after_ns: int, timeout_s: float = EVENT_TIMEOUT_S
    ) -> ContainerEvent:
        """The first ``action`` event at or after ``after_ns``, waiting for it if needed."""

        def found() -> ContainerEvent | None:
            for event in self._events:
                if event.action == action and event.time_ns >= after_ns:
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


# ----------------------------------------------------------------------- the Git remote


def _git(*args: str, cwd: Path | None = None) -> None:
    env = {**os.environ, **_GIT_ENV}
    result = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise BenchmarkError(f"git {' '.join(args)} failed: {result.stderr.strip()}")


def make_controller_remote(root: Path, versions: Sequence[str]) -> Path:
    """A bare remote with one commit and one annotated tag per version; returns its path."""
    bare = root / "controller.git"
    work = root / "controller-work"
    _git("init", "-q", "--bare", "-b", "main", str(bare))
    _git("init", "-q", "-b", "main", str(work))
    for version in versions:
        (work / "Dockerfile").write_text(DOCKERFILE.format(base=BASE_IMAGE), encoding="utf-8")
        (work / "VERSION").write_text(f"{version}\n", encoding="utf-8")
        _git("add", "-A", cwd=work)
        _git("commit", "-q", "-m", f"controller {version}", cwd=work)
        _git("tag", "-a", version, "-m", f"controller {version}", cwd=work)
    _git("push", "-q", str(bare), "main", "--tags", cwd=work)
    return bare


# ---------------------------------------------------------------------------- samples


@dataclass(slots=True)
class UpdateSample:
    source: str | None
    target: str
    states: list[str]
    total_s: float
    built: bool
    used_build_cache: bool
    prepare_s: float | None = None
    """DOWNLOADING -> VERIFIED (fetch, resolve, reset, build, verify)."""
    swap_s: float | None = None
    """UPDATING -> new container's start event."""
    stop_s: float | None = None
    """UPDATING -> old container's die event (SIGTERM handling)."""
    downtime_s: float | None = None
    """Old container's die event -> new container's start event."""
    health_s: float | None = None
    """New container's start event -> UPDATED (health grace, journal, store)."""
    housekeeping_s: float | None = None
    """UPDATED -> update() returned (prune, image GC)."""


@dataclass(slots=True)
class RestartSample:
    exit_code: str | None
    detect_s: float
    """die event -> the watchdog tick that noticed (the loop's wait_for_exit returned)."""
    backoff_s: float
    """noticing tick -> restarting tick."""
    kill_to_running_s: float
    """``docker kill`` issued -> new container's start event."""
    downtime_s: float
    """die event -> start event."""


@dataclass(slots=True)
class DiskReport:
    versions_built: int
    images_kept: list[str]
    sizes_bytes: list[int]
    expected_kept: int
    unique_bytes: int | None
    """Bytes only these images use (``docker system df``: size minus shared layers)."""

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes_bytes)


@dataclass(slots=True)
class Results:
    rounds: int
    health_grace_s: float
    backoff_initial_s: float
    engine: str
    install: UpdateSample | None = None
    uncached: list[UpdateSample] = field(default_factory=list)
    cached: list[UpdateSample] = field(default_factory=list)
    gc_updates: list[UpdateSample] = field(default_factory=list)
    restarts: list[RestartSample] = field(default_factory=list)
    disk: DiskReport | None = None
    wall_s: float = 0.0


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


# -------------------------------------------------------------------------- benchmark


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        tag = secrets.token_hex(4)
        self.container_name = f"teg-bench-{tag}"
        self.image_prefix = f"teg-bench-{tag}-"
        self.client: docker.DockerClient = docker.from_env()  # before mkdtemp: may raise
        self.tmp = Path(tempfile.mkdtemp(prefix="teg-bench-"))
        self.sink = RecordingSink()
        self.events = EventCollector(self.client, self.container_name)
        self.loop: RunnerStyleLoop | None = None
        self.container: Container | None = None
        self.gateway: Gateway | None = None
        self.runtime: ContainerRuntime | None = None
        self.running: str | None = None
        self.built: set[str] = set()

    # -- setup / teardown ------------------------------------------------------------------

    def setup(self) -> None:
        try:
            self.client.api.inspect_image(BASE_IMAGE)
        except docker.errors.ImageNotFound as exc:
            raise BenchmarkError(
                f"base image {BASE_IMAGE} is missing: run scripts/ensure-infra.sh"
            ) from exc
        remote = make_controller_remote(self.tmp, (*ALTERNATING, *GC_VERSIONS))
        settings: Settings = load_settings(
            {
                "GATEWAY_DATA_PATH": str(self.tmp / "data"),
                "CONTROLLER_GIT_PATH": str(self.tmp / "controller"),
                "TEG_CONTROLLER_GIT_URL": str(remote),
                "TEG_CONTROLLER_CONTAINER": self.container_name,
                "TEG_CONTROLLER_IMAGE_PREFIX": self.image_prefix,
                "TEG_CONTROLLER_PRIVILEGED": "0",
                "TEG_CONTROLLER_NETWORK_MODE": "host",
                "TEG_HEALTH_GRACE_S": f"{self.args.health_grace}",
                "TEG_KEEP_OLDER_IMAGES": str(KEEP_OLDER_IMAGES),
                "TEG_BACKOFF_INITIAL_S": f"{self.args.backoff_initial}",
            }
        )
        self.container = build_container(settings, telemetry=self.sink)
        self.gateway = self.container.gateway()
        self.runtime = self.container.runtime()
        self.events.start()

    def cleanup(self) -> None:
        if self.loop is not None:
            self.loop.stop()
        self.events.close()
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            self.client.api.remove_container(self.container_name, force=True)
        with contextlib.suppress(docker.errors.APIError):
            for image in self.client.api.images() or []:
                for repo_tag in image.get("RepoTags") or ():
                    if isinstance(repo_tag, str) and repo_tag.startswith(self.image_prefix):
                        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                            self.client.api.remove_image(repo_tag, force=True)
        shutil.rmtree(self.tmp, ignore_errors=True)
        with contextlib.suppress(Exception):
            self.client.close()

    # -- one update ------------------------------------------------------------------------

    def _gw(self) -> Gateway:
        if self.gateway is None:
            raise BenchmarkError("not set up")
        return self.gateway

    def _rt(self) -> ContainerRuntime:
        if self.runtime is None:
            raise BenchmarkError("not set up")
        return self.runtime

    def image_tag(self, version: str) -> str:
        return f"{self.image_prefix}{version}:latest"

    def update(self, target: str) -> UpdateSample:
        gateway = self._gw()
        lines: list[str] = []
        mark = self.sink.mark()
        start_ns = time.time_ns()
        t0 = time.monotonic()
        result = gateway.update(target, on_progress=lines.append)
        total = time.monotonic() - t0
        end_ns = time.time_ns()
        if result.outcome is not Outcome.UPDATED:
            raise BenchmarkError(
                f"update {self.running} -> {target}: {result.outcome.value}: {result.error}"
            )
        reports = self.sink.reports_since(mark)
        at = {r.report.state.value: r for r in reports}
        sample = UpdateSample(
            source=self.running,
            target=target,
            states=[r.report.state.value for r in reports],
            total_s=total,
            built=any(" building " in line or line.startswith("Step ") for line in lines),
            used_build_cache=any("Using cache" in line for line in lines),
        )
        if "DOWNLOADING" in at and "VERIFIED" in at:
            sample.prepare_s = at["VERIFIED"].mono - at["DOWNLOADING"].mono
        if "UPDATED" in at:
            sample.housekeeping_s = (end_ns - at["UPDATED"].wall_ns) / 1e9
        events = self.events.events_between(start_ns, end_ns)
        starts = [e for e in events if e.action == "start"]
        dies = [e for e in events if e.action == "die"]
        new_start = starts[0] if starts else None
        if new_start is not None and "UPDATING" in at:
            sample.swap_s = (new_start.time_ns - at["UPDATING"].wall_ns) / 1e9
            old_die = next((d for d in dies if d.time_ns <= new_start.time_ns), None)
            if old_die is not None:
                sample.stop_s = (old_die.time_ns - at["UPDATING"].wall_ns) / 1e9
                sample.downtime_s = (new_start.time_ns - old_die.time_ns) / 1e9
            if "UPDATED" in at:
                sample.health_s = (at["UPDATED"].wall_ns - new_start.time_ns) / 1e9
        self.running = target
        self.built.add(target)
        return sample

    def remove_image(self, version: str) -> None:
        """Make the next update to ``version`` a real build (the running one is kept)."""
        self._rt().remove_image(self.image_tag(version))

    # -- the measurements ------------------------------------------------------------------

    def run(self, results: Results, progress: Callable[[str], None]) -> None:
        rounds = self.args.rounds
        progress(f"initial install of {ALTERNATING[0]} (build + health grace)")
        results.install = self.update(ALTERNATING[0])

        for i in range(rounds):
            target = ALTERNATING[(i + 1) % 2]
            self.remove_image(target)
            progress(f"uncached update {i + 1}/{rounds}: {self.running} -> {target}")
            results.uncached.append(self.update(target))

        for i in range(rounds):
            target = ALTERNATING[0] if self.running == ALTERNATING[1] else ALTERNATING[1]
            progress(f"cached update {i + 1}/{rounds}: {self.running} -> {target}")
            results.cached.append(self.update(target))

        self.measure_restarts(results, progress)

        for version in GC_VERSIONS:
            progress(f"GC: update {self.running} -> {version}")
            results.gc_updates.append(self.update(version))
        results.disk = self.disk_report()

    def measure_restarts(self, results: Results, progress: Callable[[str], None]) -> None:
        gateway, runtime = self._gw(), self._rt()
        self.loop = RunnerStyleLoop(gateway, runtime)
        self.loop.start()
        time.sleep(0.5)  # let the loop block in wait_for_exit
        for i in range(self.args.rounds):
            progress(f"restart {i + 1}/{self.args.rounds}: docker kill {self.container_name}")
            # A fresh streak each time: the first restart after a crash waits initial_s.
            gateway.watchdog.backoff.reset()
            kill_ns = time.time_ns()
            self.client.api.kill(self.container_name)
            die = self.events.wait_for("die", kill_ns)
            start = self.events.wait_for("start", die.time_ns)
            noticed, restarted = self.loop.wait_for_restart(die.time_ns)
            results.restarts.append(
                RestartSample(
                    exit_code=die.exit_code,
                    detect_s=(noticed.wall_ns - die.time_ns) / 1e9,
                    backoff_s=(restarted.wall_ns - noticed.wall_ns) / 1e9,
                    kill_to_running_s=(start.time_ns - kill_ns) / 1e9,
                    downtime_s=(start.time_ns - die.time_ns) / 1e9,
                )
            )
            self._wait_running()
            time.sleep(0.5)  # the loop is blocked in wait_for_exit again
        self.loop.stop()
        self.loop = None

    def _wait_running(self, timeout_s: float = EVENT_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._rt().controller_state().running:
                return
            time.sleep(0.05)
        raise BenchmarkError("the controller did not run again after the kill")

    def disk_report(self) -> DiskReport:
        images = self._rt().list_controller_images()
        unique: int | None = None
        with contextlib.suppress(docker.errors.APIError):
            df = self.client.api.df()
            unique = 0
            for image in df.get("Images") or []:
                tags = image.get("RepoTags") or []
                if any(isinstance(t, str) and t.startswith(self.image_prefix) for t in tags):
                    shared = image.get("SharedSize")
                    size = int(image.get("Size") or 0)
                    unique += size - int(shared) if isinstance(shared, int) and shared >= 0 else 0
        return DiskReport(
            versions_built=len(self.built),
            images_kept=[i.tag.removeprefix(self.image_prefix).split(":")[0] for i in images],
            sizes_bytes=[i.size_bytes for i in images],
            expected_kept=2 + KEEP_OLDER_IMAGES,
            unique_bytes=unique,
        )


# ----------------------------------------------------------------------------- output


def _ms(values: Sequence[float | None]) -> tuple[int, str, str, str]:
    present = [v * 1000 for v in values if v is not None]
    if not present:
        return 0, "-", "-", "-"
    return (
        len(present),
        f"{min(present):.0f}",
        f"{statistics.median(present):.0f}",
        f"{max(present):.0f}",
    )


def _row(label: str, values: Sequence[float | None]) -> str:
    n, lo, med, hi = _ms(values)
    return f"  {label:<44} {n:>3} {lo:>8} {med:>8} {hi:>8}"


def render(results: Results) -> str:
    out: list[str] = []
    head = f"  {'':<44} {'n':>3} {'min':>8} {'median':>8} {'max':>8}"
    out.append(
        f"teg-ota update benchmark: {results.rounds} round(s), {results.engine}, "
        f"health grace {results.health_grace_s:g} s, all times in ms"
    )
    unc, cac, rst = results.uncached, results.cached, results.restarts
    out.append("")
    out.append("1. swap downtime (old 'die' -> new 'start' event)")
    out.append(head)
    out.append(_row("update, image built", [s.downtime_s for s in unc]))
    out.append(_row("update, image cached", [s.downtime_s for s in cac]))
    out.append("")
    out.append("2. update phases, image not cached (telemetry + engine event timestamps)")
    out.append(head)
    out.append(_row("prepare: DOWNLOADING -> VERIFIED", [s.prepare_s for s in unc]))
    out.append(_row("swap: UPDATING -> new 'start'", [s.swap_s for s in unc]))
    out.append(_row("  of which stop: UPDATING -> old 'die'", [s.stop_s for s in unc]))
    out.append(_row("  of which downtime: 'die' -> 'start'", [s.downtime_s for s in unc]))
    out.append(_row("health grace: new 'start' -> UPDATED", [s.health_s for s in unc]))
    out.append(_row("housekeeping: UPDATED -> returned", [s.housekeeping_s for s in unc]))
    out.append(_row("total update", [s.total_s for s in unc]))
    cache_hits = sum(s.used_build_cache for s in unc)
    out.append(f"  (builds that hit Docker's build cache: {cache_hits} of {len(unc)})")
    out.append("")
    out.append("3. cached update (image already built)")
    out.append(head)
    out.append(_row("prepare: DOWNLOADING -> VERIFIED", [s.prepare_s for s in cac]))
    out.append(_row("downtime: 'die' -> 'start'", [s.downtime_s for s in cac]))
    out.append(_row("total update", [s.total_s for s in cac]))
    out.append("")
    out.append(
        f"4. restart after 'docker kill' (runner-style loop, backoff initial "
        f"{results.backoff_initial_s:g} s, streak reset before each kill)"
    )
    out.append(head)
    out.append(_row("detection: 'die' -> watchdog tick", [r.detect_s for r in rst]))
    out.append(_row("backoff: noticing tick -> restarting tick", [r.backoff_s for r in rst]))
    out.append(_row("downtime: 'die' -> 'start'", [r.downtime_s for r in rst]))
    out.append(_row("kill -> running ('start' event)", [r.kill_to_running_s for r in rst]))
    disk = results.disk
    if disk is not None:
        out.append("")
        out.append(f"5. disk after building {disk.versions_built} versions (keep_older_images=1)")
        kept = ", ".join(disk.images_kept)
        out.append(
            f"  controller images kept: {len(disk.images_kept)} of {disk.versions_built} built "
            f"(expected {disk.expected_kept}: current, previous, 1 older): {kept}"
        )
        out.append(
            f"  sum of their sizes (list_controller_images): {disk.total_bytes / 1e6:.2f} MB "
            f"({disk.total_bytes} B)"
        )
        if disk.unique_bytes is not None:
            out.append(
                f"  bytes only they use (docker df, shared base layers excluded): "
                f"{disk.unique_bytes} B"
            )
    if results.install is not None:
        out.append("")
        out.append(
            f"initial install: {results.install.total_s * 1000:.0f} ms; "
            f"benchmark wall time: {results.wall_s:.1f} s"
        )
    return "\n".join(out)


def to_json(results: Results) -> str:
    data = asdict(results)

    def summary(values: Sequence[float | None]) -> dict[str, float | None]:
        present = [v * 1000 for v in values if v is not None]
        if not present:
            return {"n": 0, "min_ms": None, "median_ms": None, "max_ms": None}
        return {
            "n": len(present),
            "min_ms": round(min(present), 1),
            "median_ms": round(statistics.median(present), 1),
            "max_ms": round(max(present), 1),
        }

    data["summary"] = {
        "swap_downtime_built": summary([s.downtime_s for s in results.uncached]),
        "swap_downtime_cached": summary([s.downtime_s for s in results.cached]),
        "prepare_uncached": summary([s.prepare_s for s in results.uncached]),
        "swap_uncached": summary([s.swap_s for s in results.uncached]),
        "health_grace_uncached": summary([s.health_s for s in results.uncached]),
        "housekeeping_uncached": summary([s.housekeeping_s for s in results.uncached]),
        "total_uncached": summary([s.total_s for s in results.uncached]),
        "total_cached": summary([s.total_s for s in results.cached]),
        "restart_detection": summary([r.detect_s for r in results.restarts]),
        "restart_kill_to_running": summary([r.kill_to_running_s for r in results.restarts]),
        "restart_downtime": summary([r.downtime_s for r in results.restarts]),
    }
    if results.disk is not None:
        data["disk"]["total_bytes"] = results.disk.total_bytes
    return json.dumps(data, indent=2)


# ------------------------------------------------------------------------------- main


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5, help="rounds per measurement (5)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--health-grace", type=float, default=2.0, help="TEG_HEALTH_GRACE_S (2)")
    parser.add_argument(
        "--backoff-initial", type=float, default=0.5, help="TEG_BACKOFF_INITIAL_S (0.5)"
    )
    parser.add_argument("--verbose", action="store_true", help="teg-ota's INFO logs on stderr")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def _raise_interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """SIGTERM and SIGINT (also when inherited as ignored, e.g. in a background job) raise
    KeyboardInterrupt, so the cleanup in ``finally`` runs for both."""
    previous_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    previous_int = signal.signal(signal.SIGINT, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    level = "INFO" if args.verbose else "WARNING"
    logger.remove()
    logger.add(sys.stderr, level=level)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")

    def progress(text: str) -> None:
        print(f"[bench] {text}", file=sys.stderr, flush=True)

    started = time.monotonic()
    with _interruptible():
        try:
            bench = Bench(args)
        except docker.errors.DockerException as exc:
            print(f"[bench] no Docker engine: {exc}", file=sys.stderr)
            return 2
        version = bench.client.version()
        results = Results(
            rounds=args.rounds,
            health_grace_s=args.health_grace,
            backoff_initial_s=args.backoff_initial,
            engine=f"docker {version.get('Version', '?')}",
        )
        try:
            bench.setup()
            bench.run(results, progress)
        except BenchmarkError as exc:
            print(f"[bench] ERROR: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("[bench] interrupted; cleaning up", file=sys.stderr)
            return 130
        finally:
            progress("cleaning up (container, images, temp dir)")
            bench.cleanup()
    results.wall_s = time.monotonic() - started
    print(to_json(results) if args.json else render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
