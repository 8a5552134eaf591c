#!/usr/bin/env bash
# Mutation score (a figure, never pass/fail; not part of CI):
#   bash scripts/mutation.sh [--services] [--survivors] [--keep] [--max-children N]
#
# Runs mutmut (3.x, in .venv) over the pure core src/teg_ota/domain/core/ (with --services
# also src/teg_ota/domain/services/), killing mutants with tests/unit only, and prints the
# share of mutants killed (killed / total) per package on stdout; mutmut's own progress goes
# to stderr. --survivors also lists the surviving mutants with their diffs.
#
# mutmut works in a copy: src/, tests/unit/, docs/ (some unit tests read it) and
# pyproject.toml (with a generated [tool.mutmut] section) are copied to a temporary
# directory, so the working tree gets no mutants/ folder and the project's pyproject.toml
# needs no mutmut config. --keep leaves that directory in place (its path is printed) for
# `mutmut results`, `mutmut show NAME` there. tests/unit/test_layers.py is left out: it
# reads the sources, which import mutmut's trampoline once mutated.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

services=0 survivors=0 keep=0 max_children=""
while (($#)); do
    case "$1" in
        --services) services=1 ;;
        --survivors) survivors=1 ;;
        --keep) keep=1 ;;
        --max-children)
            max_children="${2:?--max-children needs a number}"
            shift
            ;;
        -h | --help)
            # The comment block at the top of this file.
            awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
            exit 0
            ;;
        *)
            echo "mutation.sh: unknown argument: $1 (see --help)" >&2
            exit 2
            ;;
    esac
    shift
done

PY="$ROOT/.venv/bin/python"
MUTMUT="$ROOT/.venv/bin/mutmut"
if [[ ! -x "$MUTMUT" ]]; then
    echo "mutation.sh: $MUTMUT is missing: .venv/bin/pip install -e '.[dev]'" >&2
    exit 2
fi

packages=("src/teg_ota/domain/core")
if ((services)); then
    packages+=("src/teg_ota/domain/services")
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/teg-ota-mutation.XXXXXX")"
cleanup() {
    if ((keep)); then
        echo "[mutation] kept $work (cd there and run $MUTMUT results / show NAME)" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

echo "[mutation] $("$MUTMUT" --version); copying the tree to $work" >&2
mkdir -p "$work/tests"
# The package sources, the unit tests and the docs some of them check: nothing mutmut could
# pick up by accident.
tar -C "$ROOT" --exclude=__pycache__ --exclude='*.egg-info' -cf - src tests/__init__.py tests/unit docs |
    tar -C "$work" -xf -

# The project's pyproject.toml (pytest settings) with a [tool.mutmut] section of our own.
"$PY" - "$ROOT/pyproject.toml" "$work/pyproject.toml" "${packages[@]}" <<'EOF'
import json
import sys

source, target, *packages = sys.argv[1:]
text = open(source, encoding="utf-8").read()
# Drop a [tool.mutmut] section the project may have: ours replaces it.
kept, skipping = [], False
for line in text.splitlines(keepends=True):
    if line.startswith("["):
        skipping = line.strip() == "[tool.mutmut]"
    if not skipping:
        kept.append(line)
text = "".join(kept)
only = [f"{package}/*.py" for package in packages]
text += f"""
[tool.mutmut]
source_paths = ["src/"]
also_copy = ["docs/"]
only_mutate = {json.dumps(only)}
pytest_add_cli_args_test_selection = ["tests/unit"]
# test_layers reads the sources, which import mutmut's trampoline once mutated.
pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "--ignore=tests/unit/test_layers.py"]
use_git_change_detection = false
"""
open(target, "w", encoding="utf-8").write(text)
EOF

cd "$work"
run_args=()
if [[ -n "$max_children" ]]; then
    run_args+=(--max-children "$max_children")
fi
started=$SECONDS
# mutmut's progress lines go to stderr: stdout is the score.
"$MUTMUT" run "${run_args[@]}" >&2 || {
    echo "[mutation] mutmut run failed (exit $?)" >&2
    exit 1
}
echo "[mutation] mutmut run took $((SECONDS - started)) s" >&2

"$PY" - "$survivors" "$MUTMUT" "${packages[@]}" <<'EOF'
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

show_survivors, mutmut, *packages = sys.argv[1:]
# mutmut's exit codes (mutmut.stats.status_by_exit_code): 1 and 3 are kills.
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests",
          34: "skipped", 36: "timeout", -24: "timeout", 24: "timeout", 152: "timeout",
          255: "timeout", 37: "caught by type check", None: "not checked"}

print("mutation score: mutants killed by tests/unit (killed / total)")
survived: list[str] = []
for package in packages:
    statuses: Counter[str] = Counter()
    per_file: list[tuple[str, int, int]] = []
    for meta in sorted(Path("mutants", package).rglob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        file_statuses = Counter(STATUS.get(code, "suspicious") for code in codes.values())
        statuses += file_statuses
        survived += [name for name, code in codes.items() if STATUS.get(code) == "survived"]
        name = str(meta.relative_to(Path("mutants", package))).removesuffix(".meta")
        per_file.append((name, file_statuses["killed"], len(codes)))
    total, killed = sum(statuses.values()), statuses["killed"]
    share = f"{100 * killed / total:5.1f}%" if total else "    -"
    others = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()) if s != "killed")
    print(f"  {package:<32} {share}  ({killed} / {total} killed{'; ' + others if others else ''})")
    for name, file_killed, file_total in per_file:
        if not file_total:
            continue  # nothing to mutate (an __init__.py)
        file_share = f"{100 * file_killed / file_total:5.1f}%"
        print(f"      {name:<28} {file_share}  ({file_killed} / {file_total})")
if survived and show_survivors != "1":
    print(f"surviving mutants: {len(survived)} (--survivors lists them with their diffs)")
elif survived:
    print(f"surviving mutants: {len(survived)}")
    for name in survived:
        print(f"  {name}")
        diff = subprocess.run([mutmut, "show", name], capture_output=True, text=True).stdout
        print("".join(f"      {line}\n" for line in diff.splitlines()[1:]))
EOF
