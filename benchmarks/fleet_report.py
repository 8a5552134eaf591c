"""What the fleet simulation prints: the JSON summary, the goal, the figures, the plot.

The goal (issue 16), for the default settings: after a broker restart the peak attribute
request rate is at most 2x fleet size / connect window, and 99 % of the fleet is back within
the window plus one backoff step. It is printed met or not; it never fails the run.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench_table import Figure
from fleet_scenarios import Run

SCENARIOS = ("broker_restart", "fleet_assignment", "git_rate_limited")
TITLES = {
    "broker_restart": "broker restart",
    "fleet_assignment": "assignment to the whole fleet at once",
    "git_rate_limited": "Git origin answers 429",
}
COLOURS = {"connections": "tab:blue", "requests": "tab:orange", "fetches": "tab:green"}


def summary(runs: Mapping[bool, Mapping[str, Run]]) -> dict[str, Any]:
    """A key per scenario: the with-jitter figures, the others under ``without_jitter``."""
    out: dict[str, Any] = {}
    for name in SCENARIOS:
        with_jitter = runs.get(True, {}).get(name)
        without = runs.get(False, {}).get(name)
        if with_jitter is None and without is None:
            continue
        entry = dict(with_jitter.figures) if with_jitter is not None else {}
        if without is not None:
            entry["without_jitter"] = dict(without.figures)
        out[name] = entry
    return out


def goal_figures(runs: Mapping[bool, Mapping[str, Run]]) -> list[Figure]:
    """The issue's goal and the figures around it, each beside the limit it is held to."""
    figures: list[Figure] = []
    for jitter_on, scenarios in sorted(runs.items(), reverse=True):
        note = "with jitter" if jitter_on else "without jitter (the old schedule)"
        restart = scenarios.get("broker_restart")
        if restart is not None:
            f = restart.figures
            per_window = f["fleet_size"] / f["window_s"]
            back = f["p99_reconnected_s"]
            figures += [
                Figure(
                    "peak attribute requests after a broker restart",
                    "req/s",
                    [f["peak_requests_per_s"]],
                    "fleet size / connect window",
                    [per_window],
                    goal_ratio=2.0 if jitter_on else None,
                    note=note,
                ),
                Figure(
                    "99 % of the fleet reconnected after a broker restart",
                    "s",
                    [back if back is not None else float("inf")],
                    "connect window + one backoff step",
                    [f["window_s"] + f["backoff_step_s"]],
                    goal_ratio=1.0 if jitter_on else None,
                    note=note,
                ),
            ]
        for name in ("fleet_assignment", "git_rate_limited"):
            run = scenarios.get(name)
            if run is None:
                continue
            f = run.figures
            figures.append(
                Figure(
                    f"peak Git fetches, {TITLES[name]}",
                    "fetch/s",
                    [f["peak_fetches_per_s"]],
                    "fleet size (all at once)",
                    [f["fleet_size"]],
                    note=note,
                )
            )
    return figures


def goal_line(runs: Mapping[bool, Mapping[str, Run]]) -> str:
    restart = runs.get(True, {}).get("broker_restart")
    if restart is None:
        return "goal: not measured (the with-jitter broker restart did not run)"
    f = restart.figures
    peak_limit = 2 * f["fleet_size"] / f["window_s"]
    back_limit = f["window_s"] + f["backoff_step_s"]
    back = f["p99_reconnected_s"]
    peak_ok = f["peak_requests_per_s"] <= peak_limit
    back_ok = back is not None and back <= back_limit
    return (
        f"goal (issue 16, default settings, {f['fleet_size']} gateways): peak request rate "
        f"{f['peak_requests_per_s']}/s <= {peak_limit:.0f}/s: {'met' if peak_ok else 'NOT met'}; "
        f"99 % back in {back if back is None else round(back, 2)} s <= {back_limit:g} s: "
        f"{'met' if back_ok else 'NOT met'}"
    )


def plot(runs: Mapping[bool, Mapping[str, Run]], path: Path) -> None:
    """Rates over time, a row per scenario, with jitter (left) and without (right)."""
    # Imported here: matplotlib is the optional `bench` extra, needed only for a plot.
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    variants = [v for v in (True, False) if v in runs]
    fig, axes = plt.subplots(
        len(SCENARIOS), len(variants), figsize=(6 * len(variants), 9), squeeze=False
    )
    for row, name in enumerate(SCENARIOS):
        top = 1
        for col, jitter_on in enumerate(variants):
            run = runs[jitter_on].get(name)
            ax = axes[row][col]
            if run is None:
                ax.set_visible(False)
                continue
            for label, colour in COLOURS.items():
                series = run.series.get(label, [])
                if any(series):
                    ax.plot(series, label=f"{label}/s", color=colour, drawstyle="steps-post")
                    top = max(top, *series)
            f = run.figures
            ax.set_title(
                f"{TITLES[name]}, {f['fleet_size']} gateways, "
                f"{'with' if jitter_on else 'without'} jitter",
                fontsize=9,
            )
            ax.set_xlabel("seconds since the event")
            ax.legend(fontsize=8)
        for col in range(len(variants)):
            axes[row][col].set_ylim(0, top * 1.05)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
