"""How the Git part of an update grows with the repository: time and peak RSS for 1 / 100 /
2,000 commits and 1 / 50 / 500 tags (issue 14).

The Git part of an update is what ``GitPackageSource`` asks of the repository before the
image is built: fetch, resolve the version, reset the work tree to it. For each size (a
bare ``file://`` remote built by ``bench_git.build_remote``, cloned once by teg-ota's adapter
and once by ``git``), each round adds one commit with a new annotated tag to the remote,
then measures:

* update time: teg-ota's adapter, ``fetch()`` + ``resolve(tag)`` + ``reset_to(commit)``, in a
  fresh interpreter (timed inside it, so the interpreter's start-up is not counted), beside
  ``git fetch`` + ``git rev-parse tag^{commit}`` + ``git checkout -f`` + ``git clean -fdx``;
* peak RSS: that interpreter's ``ru_maxrss``, beside the same interpreter that only imports
  the adapter (the ratio is what the Git work adds). A child per measurement, so one
  round's memory never counts in the next.

Ratios are taken within each round; the table shows medians (``bench_table``). No goal:
these figures show whether cost follows the history or only what changed.

Usage: ``.venv/bin/python benchmarks/growth.py [--rounds N] [--json]``. Needs only the
``git`` CLI; everything is made and removed in a temp dir.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench_git import Remote, adapter_in_child, build_remote
from bench_table import Figure, render, to_json
from loguru import logger

from teg_ota.adapters.git import DulwichSourceRepo

COMMITS = (1, 100, 2000)
TAGS = (1, 50, 500)
GIT_REFERENCE = "git fetch + rev-parse + checkout -f + clean -fdx"
RSS_REFERENCE = "the same child, adapter imported only"


def _git_update(remote: Remote, clone: Path, tag: str) -> float:
    seconds = remote.git(clone, "fetch", "-q", "origin")
    seconds += remote.git(clone, "rev-parse", "-q", "--verify", f"refs/tags/{tag}^{{commit}}")
    seconds += remote.git(clone, "checkout", "-q", "-f", f"refs/tags/{tag}^{{commit}}")
    seconds += remote.git(clone, "clean", "-q", "-f", "-d", "-x")
    return seconds


def _measure_size(base: Path, commits: int, tags: int, rounds: int, verbose: bool) -> list[Figure]:
    remote = build_remote(base, commits, tags)
    ours, theirs = base / "adapter", base / "git"
    DulwichSourceRepo(str(ours), url=remote.url).fetch()
    remote.git(base, "clone", "-q", remote.url, str(theirs))
    seconds: tuple[list[float], list[float]] = ([], [])
    rss: tuple[list[float], list[float]] = ([], [])
    for n in range(rounds):
        tag = f"growth-{n}"
        remote.add_commit(tag=tag)
        if n % 2 == 0:
            adapter_s, adapter_mib = adapter_in_child(ours, remote.url, tag)
            git_s = _git_update(remote, theirs, tag)
        else:
            git_s = _git_update(remote, theirs, tag)
            adapter_s, adapter_mib = adapter_in_child(ours, remote.url, tag)
        _, idle_mib = adapter_in_child(ours, remote.url, "")
        seconds[0].append(adapter_s)
        seconds[1].append(git_s)
        rss[0].append(adapter_mib)
        rss[1].append(idle_mib)
        if verbose:
            print(
                f"[growth] {commits} commits / {tags} tags, round {n + 1}: "
                f"{adapter_s:.3f} s (git {git_s:.3f} s), {adapter_mib:.1f} MiB "
                f"(idle {idle_mib:.1f} MiB)",
                file=sys.stderr,
            )
    size = f"{commits:,} commits / {tags:,} tags"
    return [
        Figure(f"update path, {size}", "s", seconds[0], GIT_REFERENCE, seconds[1]),
        Figure(f"update path peak RSS, {size}", "MiB", rss[0], RSS_REFERENCE, rss[1]),
    ]


def measure(rounds: int, verbose: bool) -> list[Figure]:
    figures: list[Figure] = []
    for commits in COMMITS:
        for tags in TAGS:
            base = Path(tempfile.mkdtemp(prefix="teg-ota-growth-"))
            try:
                figures.extend(_measure_size(base, commits, tags, rounds, verbose))
            finally:
                shutil.rmtree(base, ignore_errors=True)
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds per size (5)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--verbose", action="store_true", help="each round on stderr")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    logger.remove()
    figures = measure(args.rounds, args.verbose)
    title = "How the Git part of an update grows"
    print(to_json({"growth": figures}) if args.json else render(title, figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
