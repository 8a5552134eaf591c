#!/usr/bin/env bash
# Benchmarks (figures, never pass/fail): `bash scripts/bench.sh [--rounds N] [--json] [--only S]`
# prints every speed and size figure beside its reference measured in the same run, as a ratio
# (benchmarks/run_all.py). `bash scripts/bench.sh --fleet [ARGS]` runs the fleet simulation
# instead (benchmarks/fleet.py, docs/fleet.md). Prepares the machine first
# (scripts/ensure-infra.sh: dockerd, local base images) and .venv with the `dev` and `bench` extras.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash "$ROOT/scripts/ensure-infra.sh"

bash "$ROOT/scripts/ensure-venv.sh" dev,bench

if [[ "${1:-}" == "--fleet" ]]; then
  shift
  exec .venv/bin/python benchmarks/fleet.py "$@"
fi
exec .venv/bin/python benchmarks/run_all.py "$@"
