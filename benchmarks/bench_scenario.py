"""The update benchmark's scenario: a local Git remote with one tag per controller version,
the real adapters built through ``teg_ota.api.build_container``, and the measurements (updates
with and without a cached image, restarts after ``docker kill``, the images the GC keeps)."""

# The git CLI is called with fixed argument lists (no shell, no user input).
# ruff: noqa: S603, S607

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import docker
import docker.errors
from bench_events import (
    EVENT_TIMEOUT_S,
    BenchmarkError,
    EventCollector,
    RecordingSink,
    RunnerStyleLoop,
)
from bench_reference import References
from bench_results import DiskReport, RestartSample, Results, UpdateSample

from teg_ota.api import (
    Container,
    Gateway,
    Outcome,
    Settings,
    build_container,
    load_settings,
)
from teg_ota.ports.container_runtime import ContainerRuntime

BASE_IMAGE = "teg-ota-test-busybox:latest"
ALTERNATING = ("v1", "v2")
"""The two versions the update rounds alternate between."""
GC_VERSIONS = ("v3", "v4", "v5")
"""Built one after the other at the end, so more images exist than the GC keeps."""
UNHEALTHY = "v9"
"""A version whose health check fails at once: its health gate fails and the update rolls
back (the ROLLING_BACK phase's own stop + start)."""
KEEP_OLDER_IMAGES = 1
STOP_GRACE_S = 10
NEXT_SUFFIX = "-next"
"""The temporary name a replacement controller is created under before the swap."""

DOCKERFILE = """\
FROM {base}
COPY VERSION /VERSION
CMD ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1 & wait $!; done"]
"""
"""A controller that runs until SIGTERM and exits at once on it (``sleep`` in the background,
so the trap runs without waiting for the current ``sleep`` to end)."""

UNHEALTHY_DOCKERFILE = DOCKERFILE + "HEALTHCHECK --interval=1s --timeout=1s --retries=1 CMD false\n"


_GIT_ENV = {
    "GIT_AUTHOR_NAME": "teg-ota bench",
    "GIT_AUTHOR_EMAIL": "bench@teg-ota.invalid",
    "GIT_COMMITTER_NAME": "teg-ota bench",
    "GIT_COMMITTER_EMAIL": "bench@teg-ota.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
}


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
        dockerfile = UNHEALTHY_DOCKERFILE if version == UNHEALTHY else DOCKERFILE
        (work / "Dockerfile").write_text(dockerfile.format(base=BASE_IMAGE), encoding="utf-8")
        (work / "VERSION").write_text(f"{version}\n", encoding="utf-8")
        _git("add", "-A", cwd=work)
        _git("commit", "-q", "-m", f"controller {version}", cwd=work)
        _git("tag", "-a", version, "-m", f"controller {version}", cwd=work)
    _git("push", "-q", str(bare), "main", "--tags", cwd=work)
    return bare


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
        self.events = EventCollector(
            self.client, (self.container_name, self.container_name + NEXT_SUFFIX)
        )
        self.refs = References(self.client, self.container_name, STOP_GRACE_S)
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
        remote = make_controller_remote(self.tmp, (*ALTERNATING, *GC_VERSIONS, UNHEALTHY))
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
                "TEG_STOP_GRACE_S": str(STOP_GRACE_S),
            }
        )
        self.container = build_container(settings, telemetry=self.sink)
        self.gateway = self.container.gateway()
        self.runtime = self.container.runtime()
        self.events.start()
        self.refs.start()

    def cleanup(self) -> None:
        if self.loop is not None:
            self.loop.stop()
        self.events.close()
        self.refs.close()
        for suffix in ("", NEXT_SUFFIX, "-failed"):
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                self.client.api.remove_container(self.container_name + suffix, force=True)
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

    def update(self, target: str, *, expect: Outcome = Outcome.UPDATED) -> UpdateSample:
        gateway = self._gw()
        lines: list[str] = []
        mark = self.sink.mark()
        start_ns = time.time_ns()
        t0 = time.monotonic()
        force = expect is not Outcome.UPDATED  # a version that failed before is tried again
        result = gateway.update(target, force=force, on_progress=lines.append)
        total = time.monotonic() - t0
        end_ns = time.time_ns()
        if result.outcome is not expect:
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
            sample.to_updated_s = (at["UPDATED"].wall_ns - start_ns) / 1e9
        events = self.events.events_between(start_ns, end_ns)
        starts = [e for e in events if e.action == "start"]
        dies = [e for e in events if e.action == "die"]
        if expect is not Outcome.UPDATED:
            # The rollback: the last start (the previous version) after the last die.
            if starts:
                back = starts[-1]
                down = [d for d in dies if d.time_ns <= back.time_ns]
                if down:
                    sample.downtime_s = (back.time_ns - down[-1].time_ns) / 1e9
            self.built.add(target)
            return sample
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
            results.uncached_ref.append(self.refs.stop_start(self.image_tag(target)))

        for i in range(rounds):
            target = ALTERNATING[0] if self.running == ALTERNATING[1] else ALTERNATING[1]
            progress(f"cached update {i + 1}/{rounds}: {self.running} -> {target}")
            results.cached.append(self.update(target))
            results.cached_ref.append(self.refs.stop_start(self.image_tag(target)))

        for i in range(rounds):
            progress(f"rollback {i + 1}/{rounds}: {self.running} -> {UNHEALTHY} -> back")
            results.rollbacks.append(self.update(UNHEALTHY, expect=Outcome.ROLLED_BACK))
            results.rollback_ref.append(self.refs.stop_start(self.image_tag(self.running or "")))

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
            results.restart_ref.append(self.refs.restart_always(self.image_tag(self.running or "")))
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
