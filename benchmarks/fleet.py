"""Issue 16's fleet simulation: N teg-ota gateways on one ThingsBoard stand-in (docs/fleet.md).

``.venv/bin/python benchmarks/fleet.py [--gateways N] [--scenario NAME] [--no-jitter]
[--json] [--plot PATH]`` (or ``bash scripts/bench.sh --fleet ...``). N gateways (default
1,000) run in a child process per variant (fleet_variant.py), each with teg-ota's real MQTT
link, attribute handling and update service over fake runtimes, against one real Mosquitto
(testcontainers) behind the stand-in's per-device session gates, with and without jitter.
Measured, never asserted: the goal is printed met or not. ``measure()`` runs the default
once for benchmarks/run_all.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "tests" / "integration", ROOT / "benchmarks"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bench_table import Figure, render  # noqa: E402
from fleet_broker import FleetBroker  # noqa: E402
from fleet_report import SCENARIOS, goal_figures, goal_line, plot, summary  # noqa: E402
from fleet_scenarios import Options, Run  # noqa: E402
from fleet_standin import raise_nofile  # noqa: E402
from fleet_variant import run_variant  # noqa: E402

Runs = dict[bool, dict[str, Run]]


def simulate(
    options: Options, scenarios: Sequence[str], variants: Sequence[bool], verbose: bool
) -> Runs:
    """Every chosen scenario for every variant, on one Mosquitto; each variant in a child
    process of its own (fleet_variant.py), which the broker outlives."""
    raise_nofile()
    # A SIGTERM (timeout, Ctrl-C of a script) still removes the broker and the temp dir.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="teg-ota-fleet-", dir="/dev/shm"))
    broker = FleetBroker(work / "mosquitto")
    runs: Runs = {}
    try:
        broker.start()
        for jitter_on in variants:
            data = work / ("jitter" if jitter_on else "no-jitter")
            _say(f"{options.size} gateways {'with' if jitter_on else 'without'} jitter: starting")
            runs[jitter_on] = run_variant(
                broker.port,
                dataclasses.replace(options, data=data),
                jitter_on,
                scenarios,
                broker.restart,
                _say,
                verbose,
            )
            shutil.rmtree(data, ignore_errors=True)
    finally:
        broker.remove()
        shutil.rmtree(work, ignore_errors=True)
    return runs


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def measure(rounds: int, verbose: bool) -> list[Figure]:
    """The default simulation, once (a run takes minutes; ``rounds`` is not repeated)."""
    return goal_figures(simulate(Options(), SCENARIOS, (True, False), verbose))


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--gateways", type=int, default=1000, help="fleet size (1000)")
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    variants = parser.add_mutually_exclusive_group()
    variants.add_argument("--no-jitter", action="store_true", help="only without jitter")
    variants.add_argument("--jitter-only", action="store_true", help="only with jitter")
    parser.add_argument("--json", action="store_true", help="the summary as one JSON object")
    parser.add_argument("--plot", type=Path, help="write the rate-over-time PNG here")
    parser.add_argument("--rate-limit-s", type=float, default=60.0, help="429 for this long")
    parser.add_argument("--pack-size", type=int, default=100, help="paced: devices per pack")
    parser.add_argument("--pack-interval-s", type=float, default=60.0, help="paced: pack interval")
    parser.add_argument("--paced-packs", type=int, default=2, help="paced: packs measured")
    parser.add_argument("--seed", type=int, default=16, help="seeds every link's random source")
    parser.add_argument("--verbose", action="store_true", help="teg-ota's own log lines")
    parser.add_argument("--rounds", type=int, default=1, help="accepted for run_all; runs once")
    args = parser.parse_args(argv)
    if args.gateways < 1 or args.pack_size < 1 or args.paced_packs < 1:
        parser.error("--gateways, --pack-size and --paced-packs must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    options = Options(
        size=args.gateways,
        rate_limit_s=args.rate_limit_s,
        pack_size=args.pack_size,
        pack_interval_s=args.pack_interval_s,
        paced_packs=args.paced_packs,
        seed=args.seed,
    )
    scenarios = SCENARIOS if args.scenario == "all" else (args.scenario,)
    variants = (False,) if args.no_jitter else (True,) if args.jitter_only else (True, False)
    runs = simulate(options, scenarios, variants, args.verbose)
    result = summary(runs)
    if "broker_restart" in result and True in runs:
        result["broker_restart"]["goal"] = goal_line(runs)
    if args.plot is not None:
        plot(runs, args.plot)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(render("fleet simulation", goal_figures(runs)))
    print()
    print(goal_line(runs))
    print()
    for name, figures in result.items():
        print(f"{name}: {json.dumps(figures)}")
    if args.plot is not None:
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
