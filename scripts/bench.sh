#!/usr/bin/env bash
# Benchmarks (figures, never pass/fail): `bash scripts/bench.sh [--rounds N] [--json]`.
# Prepares the machine (scripts/ensure-infra.sh: dockerd, local base images) and .venv, then
# runs benchmarks/update_downtime.py against the real dockerd. Extra arguments go to it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash "$ROOT/scripts/ensure-infra.sh"

bash "$ROOT/scripts/ensure-venv.sh"

exec .venv/bin/python benchmarks/update_downtime.py "$@"
