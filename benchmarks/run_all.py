"""Every speed and size figure of teg-ota beside its reference, in one table (``scripts/bench.sh``).

Each section is a benchmark module with ``measure(rounds, verbose) -> list[Figure]``; they run
one after another (never in parallel: they would measure each other) and a section that cannot
measure (no engine, no broker) prints why and the others still run. Exit status: 0 when every
section measured, 1 otherwise; a goal not met is a figure, never a failure.

Usage: ``bash scripts/bench.sh [--rounds N] [--json] [--only NAME[,NAME...]]``; the fleet
simulation is separate (``bash scripts/bench.sh --fleet ...``, benchmarks/fleet.py).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_table import Figure, render, to_json

SECTIONS: dict[str, tuple[str, str]] = {
    "update": ("update_downtime", "swap, restart and cached update"),
    "cli": ("cli_startup", "command-line start-up"),
    "git": ("git_speed", "Git fetch and clone"),
    "growth": ("growth", "how cost grows with commits and tags"),
    "idle": ("idle_cost", "idle cost"),
    "outbox": ("outbox_drain", "outbox drain rate"),
}


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds per figure (5)")
    parser.add_argument("--json", action="store_true", help="one JSON object, a key per section")
    parser.add_argument("--only", default="", help=f"comma-separated sections of {list(SECTIONS)}")
    parser.add_argument("--verbose", action="store_true", help="the benchmarks' own progress")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    chosen = [s.strip() for s in args.only.split(",") if s.strip()] or list(SECTIONS)
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        parser.error(f"--only: unknown section(s) {unknown}; known: {list(SECTIONS)}")
    args.sections = chosen
    return args


def _measurer(module_name: str) -> Callable[[int, bool], list[Figure]]:
    module = importlib.import_module(module_name)
    measure: Callable[[int, bool], list[Figure]] = module.measure
    return measure


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    results: dict[str, list[Figure]] = {}
    failed: list[str] = []
    for key in args.sections:
        module_name, title = SECTIONS[key]
        started = time.monotonic()
        print(f"[bench] {key}: {title} ...", file=sys.stderr, flush=True)
        try:
            results[key] = _measurer(module_name)(args.rounds, args.verbose)
        except KeyboardInterrupt:
            print("[bench] interrupted", file=sys.stderr)
            return 130
        except Exception as exc:  # noqa: BLE001 - one section's failure must not hide the rest
            failed.append(key)
            print(f"[bench] {key} could not measure: {exc!r}", file=sys.stderr)
            if args.verbose:
                traceback.print_exc()
            continue
        print(f"[bench] {key} done in {time.monotonic() - started:.0f} s", file=sys.stderr)
    if args.json:
        print(to_json(results))
    else:
        for key, figures in results.items():
            print(render(SECTIONS[key][1], figures))
            print()
    if failed:
        print(f"[bench] sections that could not measure: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
