"""Git fetch and first clone: teg-ota's adapter (dulwich) beside the ``git`` CLI, on this
machine and over a real network transport.

For a remote of 2,000 commits and 500 annotated tags (``bench_git.build_remote``), reached
two ways:

* ``file://``, as teg-ota's integration tests reach it (the adapter then copies packs and
  objects directly, ``adapters/git/local_remote.py``);
* ``git://`` from ``git daemon`` (Git's own server, in C) on the loopback, started and
  stopped here (``bench_git.git_daemon``): what a gateway does with its server over HTTPS or
  SSH (dulwich's client negotiating a pack with ``upload-pack``), without the wire's latency
  and bandwidth. teg-ota accepts a ``git://`` URL as ``TEG_CONTROLLER_GIT_URL`` (no
  credentials in it), so the adapter is driven exactly as for ``file://``;

each round measures, for both and for each transport:

1. first clone: teg-ota's ``DulwichSourceRepo(path, url).fetch()`` on an empty path (clone
   and check out the default branch) beside ``git clone``;
2. fetch one new commit: a commit is added to the remote, then the adapter's ``fetch()``
   and ``git fetch origin`` each bring it into their own clone;
3. fetch, nothing new: the same, with nothing added (what every update's fetch costs when
   the version is already there).

The adapter runs in this process (as in the service, where dulwich is imported once);
``git`` runs as the command it is. Which of the two goes first alternates by round, so
neither always gets the warmer page cache. Ratios are taken within each round; the table
shows medians (``bench_table``). Goals from issue 14: clone within 2x, fetch within 1.5x.

Usage: ``.venv/bin/python benchmarks/git_speed.py [--rounds N] [--json] [--commits N]
[--tags N]``. Needs only the ``git`` CLI (with ``git daemon``); everything is made and
removed in a temp dir.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from bench_git import Remote, build_remote, git_daemon
from bench_table import Figure, render, to_json
from loguru import logger

from teg_ota.adapters.git import DulwichSourceRepo

COMMITS = 2000
TAGS = 500


def _timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _pair(
    first_is_adapter: bool, adapter: Callable[[], float], git: Callable[[], float]
) -> tuple[float, float]:
    """(adapter seconds, git seconds), run in the order the round asks for."""
    if first_is_adapter:
        a = adapter()
        return a, git()
    g = git()
    return adapter(), g


@dataclass
class _Series:
    """One transport's times: (adapter, git) seconds per round, for each figure."""

    clone: tuple[list[float], list[float]] = field(default_factory=lambda: ([], []))
    fetch_new: tuple[list[float], list[float]] = field(default_factory=lambda: ([], []))
    fetch_none: tuple[list[float], list[float]] = field(default_factory=lambda: ([], []))

    def figures(self, transport: str, size: str, note: str) -> list[Figure]:
        return [
            Figure(
                f"first clone over {transport}, {size}",
                "s",
                self.clone[0],
                "git clone",
                self.clone[1],
                goal_ratio=2.0,
                note=note,
            ),
            Figure(
                f"fetch one new commit over {transport}",
                "s",
                self.fetch_new[0],
                "git fetch",
                self.fetch_new[1],
                goal_ratio=1.5,
            ),
            Figure(
                f"fetch, nothing new, over {transport}",
                "s",
                self.fetch_none[0],
                "git fetch",
                self.fetch_none[1],
            ),
        ]


def _round(n: int, base: Path, remote: Remote, url: str, series: _Series) -> None:
    """Clone, fetch one new commit, fetch nothing new, from ``url``: the adapter and
    ``git`` side by side, the order alternating by round."""
    adapter_first = n % 2 == 0
    label = "file" if url.startswith("file:") else "net"
    ours, theirs = base / f"adapter-{label}-{n}", base / f"git-{label}-{n}"
    repo = DulwichSourceRepo(str(ours), url=url)
    a, g = _pair(
        adapter_first,
        partial(_timed, repo.fetch),
        partial(remote.git, base, "clone", "-q", url, str(theirs)),
    )
    series.clone[0].append(a)
    series.clone[1].append(g)
    remote.add_commit()
    a, g = _fetch_pair(adapter_first, repo, remote, theirs)
    series.fetch_new[0].append(a)
    series.fetch_new[1].append(g)
    a, g = _fetch_pair(adapter_first, repo, remote, theirs)
    series.fetch_none[0].append(a)
    series.fetch_none[1].append(g)
    shutil.rmtree(ours)
    shutil.rmtree(theirs)


def measure(rounds: int, verbose: bool, commits: int = COMMITS, tags: int = TAGS) -> list[Figure]:
    local, network = _Series(), _Series()
    base = Path(tempfile.mkdtemp(prefix="teg-ota-git-speed-"))
    try:
        remote = build_remote(base, commits, tags)
        with git_daemon(remote) as daemon_url:
            for n in range(rounds):
                _round(n, base, remote, remote.url, local)
                _round(n, base, remote, daemon_url, network)
                if verbose:
                    for name, s in (("file://", local), ("git://", network)):
                        print(
                            f"[git_speed] round {n + 1} {name}: clone "
                            f"{s.clone[0][-1]:.3f}/{s.clone[1][-1]:.3f} s, fetch "
                            f"{s.fetch_new[0][-1]:.3f}/{s.fetch_new[1][-1]:.3f} s",
                            file=sys.stderr,
                        )
    finally:
        shutil.rmtree(base, ignore_errors=True)
    size = f"{commits:,} commits / {tags:,} tags"
    return local.figures("file://", size, "packs copied on this machine") + network.figures(
        "git://", size, "git daemon on the loopback"
    )


def _fetch_pair(
    adapter_first: bool, repo: DulwichSourceRepo, remote: Remote, theirs: Path
) -> tuple[float, float]:
    return _pair(
        adapter_first,
        lambda: _timed(repo.fetch),
        lambda: remote.git(theirs, "fetch", "-q", "origin"),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds (5)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--verbose", action="store_true", help="each round on stderr")
    parser.add_argument("--commits", type=int, default=COMMITS, help=f"commits ({COMMITS})")
    parser.add_argument("--tags", type=int, default=TAGS, help=f"tags ({TAGS})")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.commits < 1 or args.tags < 0:
        parser.error("--rounds and --commits must be at least 1, --tags at least 0")
    logger.remove()
    figures = measure(args.rounds, args.verbose, args.commits, args.tags)
    print(to_json({"git": figures}) if args.json else render("Git fetch and clone", figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
