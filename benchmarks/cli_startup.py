"""Command-line start-up: what ``teg-ota --help`` and ``teg-ota status --json`` cost, beside
what the interpreter and the Docker SDK cost alone (issue 14).

Each round runs four fresh processes, timed from spawn to exit (wall clock), in the same
environment:

1. ``python -c pass``: the interpreter's own start-up, the floor of any Python command;
2. ``teg-ota --help`` (the installed console script): argument parsing, nothing else;
3. the Docker SDK's inspect alone: ``python -c`` that imports ``docker`` and inspects the
   controller container, the floor of any status that asks the engine;
4. ``teg-ota status --json``: settings, the engine's view of the controller, the version
   store.

The pairs (1, 2) and (3, 4) alternate their order from round to round, so neither always
runs on the warmer page cache; a first, unrecorded round warms both. Ratios are taken within
each round, medians printed. Goals (issue 14): ``--help`` under 0.15 s on this machine (an
absolute goal: noted beside the ratio to ``python -c pass``), ``status --json`` under
0.35 s where the SDK's inspect alone takes 0.26 s (a ratio of at most 1.35).

The controller is a throwaway ``teg-ota-test-busybox:latest`` container with teg-ota's
version label, under a name of its own, with an empty temporary data directory; both are
removed at the end, also on Ctrl-C, SIGTERM or an error.

Usage: ``.venv/bin/python benchmarks/cli_startup.py [--rounds N] [--json] [--verbose]``.
Needs a Docker engine and the local base image (``scripts/ensure-infra.sh``). To measure
another tree of the sources, put its ``src`` first on ``PYTHONPATH``: every process
measured inherits the environment.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import docker
import docker.errors
from bench_table import Figure, render, to_json

IMAGE = "teg-ota-test-busybox:latest"
VERSION_LABEL = "org.teg.controller.version"  # teg_ota.ports.container_runtime.VERSION_LABEL
HELP_GOAL_S = 0.15
STATUS_GOAL_S = 0.35
"""Issue 14's goals are absolute, on the 2-core development machine; the ratios beside
their references say how far from the floor each command is."""
RUN_TIMEOUT_S = 60.0
_SDK_INSPECT = "import sys, docker; docker.from_env().containers.get(sys.argv[1]).attrs"


class BenchSetupError(RuntimeError):
    """The benchmark cannot run here (no engine, no base image, no console script)."""


@dataclass
class Samples:
    """Seconds per round, one list per process measured."""

    python_pass: list[float] = field(default_factory=list)
    teg_help: list[float] = field(default_factory=list)
    sdk_inspect: list[float] = field(default_factory=list)
    teg_status: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Commands:
    python_pass: list[str]
    teg_help: list[str]
    sdk_inspect: list[str]
    teg_status: list[str]
    env: dict[str, str]


def _teg_ota() -> list[str]:
    """The console script next to this interpreter (what systemd and operators run)."""
    script = Path(sys.executable).parent / "teg-ota"
    if not script.exists():
        raise BenchSetupError(f"no console script at {script}: scripts/ensure-venv.sh dev")
    return [str(script)]


def _env(data: Path, container: str, pycache: Path) -> dict[str, str]:
    """teg-ota's settings for the throwaway controller, and a bytecode cache of their own:
    an installed package has its ``.pyc`` (pip compiles them), but with
    ``PYTHONDONTWRITEBYTECODE`` set (as on the development machines) an editable install
    would compile every teg_ota module on every run, and only teg-ota would pay for it. The
    cache (``PYTHONPYCACHEPREFIX``, in the temporary directory, for every process measured,
    the references too) is filled by the warm-up round."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TEG_", "GATEWAY_")) and k != "PYTHONDONTWRITEBYTECODE"
    }
    env.update(
        GATEWAY_DATA_PATH=str(data),
        TEG_CONTROLLER_CONTAINER=container,
        TEG_DEFAULT_CONTROLLER_VERSION="v1.0",
        PYTHONPYCACHEPREFIX=str(pycache),
    )
    return env


def _timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(  # noqa: S603 - our own interpreter and console script
        command,
        env=env,
        capture_output=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace")[-1500:]
        raise BenchSetupError(f"{command[-2:]} exited {result.returncode}: {stderr}")
    return elapsed


def _pair(first: list[str], second: list[str], env: dict[str, str], swap: bool) -> list[float]:
    if swap:
        later, earlier = _timed(second, env), _timed(first, env)
        return [earlier, later]
    return [_timed(first, env), _timed(second, env)]


@contextlib.contextmanager
def _controller() -> Iterator[tuple[str, Path]]:
    """A running throwaway controller container and a temporary directory (removed after)."""
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        raise BenchSetupError(f"no Docker engine: {exc}") from exc
    name = f"teg-ota-bench-cli-{os.getpid()}"
    tmp = Path(tempfile.mkdtemp(prefix="teg-ota-bench-cli-"))
    container = None
    try:
        try:
            container = client.containers.run(
                IMAGE,
                name=name,
                detach=True,
                network_mode="none",
                labels={VERSION_LABEL: "v1.0"},
            )
        except docker.errors.ImageNotFound as exc:
            raise BenchSetupError(f"{IMAGE} is missing: scripts/ensure-infra.sh") from exc
        yield name, tmp
    finally:
        if container is not None:
            with contextlib.suppress(docker.errors.DockerException):
                container.remove(force=True)
        shutil.rmtree(tmp, ignore_errors=True)
        client.close()


def _raise_interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt as Ctrl-C does, so the cleanup runs for both."""
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _round(commands: Commands, samples: Samples | None, swap: bool) -> None:
    env = commands.env
    python_pass, teg_help = _pair(commands.python_pass, commands.teg_help, env, swap)
    sdk_inspect, teg_status = _pair(commands.sdk_inspect, commands.teg_status, env, swap)
    if samples is not None:
        samples.python_pass.append(python_pass)
        samples.teg_help.append(teg_help)
        samples.sdk_inspect.append(sdk_inspect)
        samples.teg_status.append(teg_status)


def run(rounds: int, verbose: bool) -> Samples:
    samples = Samples()
    with _interruptible(), _controller() as (name, tmp):
        data = tmp / "data"
        data.mkdir()
        teg_ota = _teg_ota()
        commands = Commands(
            python_pass=[sys.executable, "-c", "pass"],
            teg_help=[*teg_ota, "--help"],
            sdk_inspect=[sys.executable, "-c", _SDK_INSPECT, name],
            teg_status=[*teg_ota, "status", "--json"],
            env=_env(data, name, tmp / "pycache"),
        )
        _round(commands, None, swap=False)  # warm-up, not recorded
        for index in range(rounds):
            _round(commands, samples, swap=index % 2 == 1)
            if verbose:
                print(
                    f"[bench] round {index + 1}: pass {samples.python_pass[-1]:.3f} s, "
                    f"--help {samples.teg_help[-1]:.3f} s, inspect {samples.sdk_inspect[-1]:.3f}"
                    f" s, status {samples.teg_status[-1]:.3f} s",
                    file=sys.stderr,
                    flush=True,
                )
    return samples


def figures(samples: Samples) -> list[Figure]:
    def met(values: list[float], goal_s: float) -> str:
        return "met" if statistics.median(values) < goal_s else "NOT met"

    return [
        Figure(
            name="`teg-ota --help`",
            unit="s",
            values=samples.teg_help,
            reference="`python -c pass`",
            reference_values=samples.python_pass,
            note=f"goal: under {HELP_GOAL_S:g} s, {met(samples.teg_help, HELP_GOAL_S)}",
        ),
        Figure(
            name="`teg-ota status --json`",
            unit="s",
            values=samples.teg_status,
            reference="the Docker SDK's inspect alone",
            reference_values=samples.sdk_inspect,
            note=f"goal: under {STATUS_GOAL_S:g} s, {met(samples.teg_status, STATUS_GOAL_S)}",
        ),
    ]


def measure(rounds: int, verbose: bool) -> list[Figure]:
    """The figures of ``rounds`` rounds (``benchmarks/run_all.py``'s entry point)."""
    return figures(run(rounds, verbose))


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds (5)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--verbose", action="store_true", help="each round's times on stderr")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        table = measure(args.rounds, args.verbose)
    except BenchSetupError as exc:
        print(f"[bench] ERROR: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("[bench] interrupted; cleaned up", file=sys.stderr)
        return 130
    if args.json:
        print(to_json({"cli": table}))
    else:
        print(render("command-line start-up", table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
