#!/usr/bin/env bash
# THE project test command: `sudo ./scripts/test.sh [pytest args...]` (or as root without sudo).
# Prepares the machine (packages, dockerd, test images), the venv, then runs ruff, mypy and
# pytest on tests/unit + tests/integration. Extra arguments go to pytest.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

export TESTCONTAINERS_RYUK_DISABLED=true

section() { printf '\n==== %s ====\n' "$*"; }

section "infrastructure (scripts/ensure-infra.sh)"
bash "$ROOT/scripts/ensure-infra.sh"

section "virtualenv (.venv)"
bash "$ROOT/scripts/ensure-venv.sh" dev

section "ruff check src tests"
.venv/bin/ruff check src tests

section "lint-imports (layer contracts in pyproject.toml)"
.venv/bin/lint-imports

section "mypy"
.venv/bin/mypy

section "pytest tests/unit tests/integration $*"
rc=0
.venv/bin/pytest tests/unit tests/integration "$@" || rc=$?
if ((rc == 5)); then
    echo "pytest collected no tests: treating that as a failure" >&2
    exit 1
fi
exit "$rc"
