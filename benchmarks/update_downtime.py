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

Each figure is printed beside its limit measured in the same run (``bench_reference.py``): a
bare ``docker stop`` + ``docker start`` of a pre-created container of the same image with
the same options (after every update and rollback round), and the engine's own
``--restart=always`` kill -> running (after every restart round), as
``bench_table.Figure``s: :func:`measure` is what ``benchmarks/run_all.py`` calls.

Usage: ``bash scripts/bench.sh [--rounds N] [--json] [--health-grace S] [--verbose]``.
Needs a Docker engine and the local base image ``teg-ota-test-busybox:latest``
(``scripts/ensure-infra.sh``). Everything it creates (container, images, temp dir) is
removed at the end, also on Ctrl-C or an error.

This file is the entry point; the rest is in ``bench_events.py`` (what is observed: the
telemetry sink, the engine's events, the runner-style watchdog loop), ``bench_scenario.py``
(the Git remote, the gateway and the measurements) and ``bench_results.py`` (the samples
and how they are printed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from types import FrameType

import docker.errors
from bench_events import BenchmarkError
from bench_results import Results, figures, render, to_json
from bench_scenario import Bench
from bench_table import Figure
from bench_table import render as render_figures
from loguru import logger

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


def run(args: argparse.Namespace) -> Results:
    """Measure everything; raises :class:`BenchmarkError` when it could not."""
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
            raise BenchmarkError(f"no Docker engine: {exc}") from exc
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
        finally:
            progress("cleaning up (container, images, temp dir)")
            bench.cleanup()
    results.wall_s = time.monotonic() - started
    return results


def measure(rounds: int, verbose: bool) -> list[Figure]:
    """The figures of ``rounds`` rounds (``benchmarks/run_all.py``'s entry point)."""
    args = _parse_args(["--rounds", str(rounds), *(["--verbose"] if verbose else [])])
    return figures(run(args))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        results = run(args)
    except BenchmarkError as exc:
        print(f"[bench] ERROR: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("[bench] interrupted; cleaned up", file=sys.stderr)
        return 130
    table = figures(results)
    if args.json:
        details = json.loads(to_json(results))
        print(json.dumps({"figures": [f.to_dict() for f in table], "details": details}, indent=2))
    else:
        print(render(results))
        print()
        print(render_figures("swap, restart and cached update", table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
