#!/usr/bin/env bash
# Creates .venv at the repository root if missing and installs teg-ota into it (editable).
# Usage: scripts/ensure-venv.sh [EXTRAS]   e.g. `scripts/ensure-venv.sh dev` for the test tools.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv
fi
spec="."
if [[ -n "${1:-}" ]]; then
    spec=".[$1]"
fi
.venv/bin/pip install -q -e "$spec"
