"""Idle cost: CPU and memory of a settled ``teg-ota run`` with a broker and a controller.

A real gateway process, as the integration tests start one (tests/integration/
gateway_under_test.py): ``teg-ota run`` with a real Git remote (the sample controller
repository), the real dockerd running its controller (built from
``teg-ota-test-busybox:latest``) and a real Mosquitto on 127.0.0.1, all settings at their
defaults but the ones that name these. Once the controller runs and the link is connected it
is left alone for ``--settle`` seconds, then each round reads ``/proc/<pid>/stat`` (user +
system CPU time, all threads) and ``/proc/<pid>/status`` (``VmRSS``) at both ends of a
``--seconds`` window.

The reference is the goal of issue 14 itself (0.5 % of one core, 50 MB RSS): the ratio is
the share of the goal used. A bare ``python -c "import time; time.sleep(1e9)"``, measured
over the same windows, is printed beside as the floor of any Python process. The engine
requests the gateway makes while idle are counted by a proxy in front of the engine's
socket (bench_engine_proxy.py): periodic ones are work that an event stream could replace.

Usage: ``.venv/bin/python benchmarks/idle_cost.py [--rounds N] [--seconds S] [--json]``.
Needs a Docker engine and the local test images (``scripts/ensure-infra.sh``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
from bench_engine_proxy import CountingEngineProxy
from bench_mosquitto import BenchSetupError, Mosquitto, docker_client
from bench_table import Figure, render, to_json

# The sample controller repository of the end-to-end tests (a plain module, no pytest).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from controller_repo import make_controller_repo, remove_dangling_layers

GOAL_CPU_PERCENT = 0.5
GOAL_RSS_MB = 50.0
DEFAULT_SECONDS = 60.0
DEFAULT_SETTLE_S = 15.0
STARTUP_TIMEOUT_S = 180.0
_TICKS = os.sysconf("SC_CLK_TCK")
_BARE_PYTHON = "import time; time.sleep(1e9)"


@dataclass(frozen=True)
class Sample:
    cpu_s: float
    rss_mb: float
    at: float


def sample(pid: int) -> Sample:
    """CPU time (user + system, every thread) and resident set size of ``pid`` now."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu_s = (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14, 15)
    rss_kb = next(
        int(line.split()[1])
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmRSS:")
    )
    return Sample(cpu_s, rss_kb / 1024, time.monotonic())


def cpu_percent(first: Sample, last: Sample) -> float:
    return 100.0 * (last.cpu_s - first.cpu_s) / (last.at - first.at)


class IdleGateway:
    """Broker, engine proxy, Git remote and one ``teg-ota run``; removed on exit."""

    def __init__(self, client: docker.DockerClient, verbose: bool) -> None:
        self.client = client
        self.verbose = verbose
        self.tmp = Path(tempfile.mkdtemp(prefix="teg-bench-idle-"))
        suffix = uuid.uuid4().hex[:10]
        self.container = f"teg-bench-idle-controller-{suffix}"
        self.prefix = f"teg-bench-idle-{suffix}-"
        self.broker = Mosquitto(client)
        self.proxy = CountingEngineProxy(self.tmp / "docker.sock", _engine_socket())
        self.log_path = self.tmp / "teg-ota-run.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.broker.__enter__()
        self.proxy.start()
        repo = make_controller_repo(self.tmp / "repo")
        env = {k: v for k, v in os.environ.items() if not k.startswith("TEG_")}
        env.update(
            {
                "DOCKER_HOST": f"unix://{self.proxy.path}",
                "TEG_MQTT_HOST": self.broker.host,
                "TEG_MQTT_PORT": str(self.broker.port),
                "TEG_MQTT_TOKEN": "bench-idle-device",
                "GATEWAY_DATA_PATH": str(self.tmp / "data"),
                "CONTROLLER_GIT_PATH": str(self.tmp / "controller"),
                "TEG_CONTROLLER_GIT_URL": repo.url,
                "TEG_DEFAULT_CONTROLLER_VERSION": "v1.0",
                "TEG_CONTROLLER_PRIVILEGED": "0",
                "TEG_CONTROLLER_NETWORK_MODE": "host",
                "TEG_CONTROLLER_CONTAINER": self.container,
                "TEG_CONTROLLER_IMAGE_PREFIX": self.prefix,
                "TEG_SW_TITLE": "teg-controller",
                "TEG_LOG_LEVEL": "INFO",
                "TEG_HEALTH_GRACE_S": "3",  # settled sooner; the idle state is the same
            }
        )
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603 - a fixed argv, no shell
                [str(Path(sys.executable).parent / "teg-ota"), "run"],
                env=env,
                cwd=self.tmp,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_settled()

    def _wait_settled(self) -> None:
        """Until the controller runs and the link is connected; :class:`BenchSetupError`."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not (self._controller_running() and self._connected()):
            if self.proc is None or self.proc.poll() is not None:
                raise BenchSetupError(f"teg-ota run exited: {self._log_tail()}")
            if time.monotonic() > deadline:
                raise BenchSetupError(f"teg-ota run did not settle: {self._log_tail()}")
            time.sleep(0.2)

    def _controller_running(self) -> bool:
        try:
            attrs = self.client.api.inspect_container(self.container)
        except docker.errors.NotFound:
            return False
        return bool(attrs["State"]["Running"])

    def _connected(self) -> bool:
        return "Connected to ThingsBoard MQTT" in self.log_path.read_text(errors="replace")

    def _log_tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        with contextlib.suppress(docker.errors.DockerException):
            self.client.api.remove_container(self.container, force=True)
        with contextlib.suppress(docker.errors.DockerException):
            for image in self.client.api.images():
                for tag in image.get("RepoTags") or ():
                    if tag.startswith(self.prefix):
                        with contextlib.suppress(docker.errors.APIError):
                            self.client.images.remove(tag, force=True)
            remove_dangling_layers(self.client)
        self.proxy.close()
        self.broker.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _engine_socket() -> str:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        raise BenchSetupError(f"DOCKER_HOST {host!r}: the engine proxy needs a unix socket")
    return host.removeprefix("unix://")


def measure(
    rounds: int,
    verbose: bool,
    seconds: float = DEFAULT_SECONDS,
    settle_s: float = DEFAULT_SETTLE_S,
) -> list[Figure]:
    """``rounds`` consecutive windows of ``seconds`` each, after ``settle_s`` of quiet."""
    gateway = IdleGateway(docker_client(), verbose)
    bare = subprocess.Popen([sys.executable, "-c", _BARE_PYTHON])  # noqa: S603 - fixed argv
    cpu, rss, bare_cpu, bare_rss, per_minute = [], [], [], [], []
    seen: Counter[str] = Counter()
    try:
        gateway.start()
        time.sleep(settle_s)
        if gateway.proc is None:
            raise BenchSetupError("teg-ota run was not started")
        pid = gateway.proc.pid
        for index in range(rounds):
            first, bare_first = sample(pid), sample(bare.pid)
            requests_before, _ = gateway.proxy.snapshot()
            time.sleep(seconds)
            last, bare_last = sample(pid), sample(bare.pid)
            requests_after, _ = gateway.proxy.snapshot()
            window = requests_after - requests_before
            seen += window
            cpu.append(cpu_percent(first, last))
            rss.append(last.rss_mb)
            bare_cpu.append(cpu_percent(bare_first, bare_last))
            bare_rss.append(bare_last.rss_mb)
            per_minute.append(sum(window.values()) * 60.0 / (last.at - first.at))
            if verbose:
                print(
                    f"[idle] round {index + 1}: {cpu[-1]:.3f} % CPU, {rss[-1]:.1f} MB, "
                    f"{per_minute[-1]:.1f} engine requests/min",
                    file=sys.stderr,
                )
    finally:
        bare.kill()
        bare.wait()
        gateway.close()
    minutes = rounds * seconds / 60.0
    top = ", ".join(f"{name} {count / minutes:.1f}/min" for name, count in seen.most_common(4))
    return [
        Figure("idle CPU, teg-ota run", "% of a core", cpu, "goal", [GOAL_CPU_PERCENT] * rounds,
               goal_ratio=1.0, note=f"bare python sleeping: {_median(bare_cpu):.3f} %"),
        Figure("idle RSS, teg-ota run", "MB", rss, "goal", [GOAL_RSS_MB] * rounds,
               goal_ratio=1.0, note=f"bare python sleeping: {_median(bare_rss):.1f} MB"),
        Figure("idle CPU, bare python sleeping", "% of a core", bare_cpu, "goal",
               [GOAL_CPU_PERCENT] * rounds),
        Figure("idle RSS, bare python sleeping", "MB", bare_rss, "goal",
               [GOAL_RSS_MB] * rounds),
        Figure("idle engine requests, teg-ota run", "per min", per_minute, "none (a count)",
               note=top or "none"),
    ]  # fmt: skip


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3, help="measuring windows (3)")
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="window (60)")
    parser.add_argument("--settle", type=float, default=DEFAULT_SETTLE_S, help="quiet first (15)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--verbose", action="store_true", help="per-round figures")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.seconds <= 0 or args.settle < 0:
        parser.error("--rounds must be at least 1, --seconds positive, --settle not negative")
    try:
        figures = measure(args.rounds, args.verbose, args.seconds, args.settle)
    except BenchSetupError as exc:
        print(f"[idle] cannot measure: {exc}", file=sys.stderr)
        return 2
    print(to_json({"idle_cost": figures}) if args.json else render("Idle cost", figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
