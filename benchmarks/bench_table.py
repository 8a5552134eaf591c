"""The one shape every benchmark reports in: a figure beside its reference, as a ratio.

Project rule: speed and size are measured, never asserted. A figure means something only
beside a reference measured in the same run on the same machine (a bare ``docker stop`` +
``docker start``, ``git fetch``, ``python -c pass``...), so each :class:`Figure` carries
both, and the ratio is what the README and the changelog quote. A goal, where an issue set
one, is printed beside the ratio with whether this run met it; it never fails the run.

Each benchmark module exposes ``measure(rounds: int, verbose: bool) -> list[Figure]`` and
can run alone (``--rounds N --json``); ``benchmarks/run_all.py`` (``scripts/bench.sh``)
collects them into one table.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Figure:
    """One measured figure: medians over the rounds, ratio taken within each round."""

    name: str
    unit: str
    values: Sequence[float]
    reference: str
    reference_values: Sequence[float] = field(default_factory=tuple)
    goal_ratio: float | None = None
    """Met when the median ratio is at most this (None: no goal, only a figure)."""
    note: str = ""

    @property
    def value(self) -> float:
        return statistics.median(self.values)

    @property
    def reference_value(self) -> float | None:
        return statistics.median(self.reference_values) if self.reference_values else None

    @property
    def ratio(self) -> float | None:
        """Median of the per-round ratios (rounds paired), else ratio of the medians."""
        refs = self.reference_values
        if not refs:
            return None
        if len(refs) == len(self.values) and all(r > 0 for r in refs):
            return statistics.median(v / r for v, r in zip(self.values, refs, strict=True))
        ref = statistics.median(refs)
        return self.value / ref if ref > 0 else None

    @property
    def goal_met(self) -> bool | None:
        ratio = self.ratio
        if self.goal_ratio is None or ratio is None:
            return None
        return ratio <= self.goal_ratio

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "unit": self.unit,
            "value": _round(self.value),
            "values": [_round(v) for v in self.values],
            "reference": self.reference,
            "reference_value": _round(self.reference_value),
            "ratio": _round(self.ratio, 3),
            "goal_ratio": self.goal_ratio,
            "goal_met": self.goal_met,
            "note": self.note,
        }


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def render(title: str, figures: Sequence[Figure]) -> str:
    """A Markdown table: figure, teg-ota, reference, ratio, goal."""
    lines = [
        f"## {title}",
        "",
        "| figure | teg-ota | the limit beside it | ratio | goal |",
        "| --- | --- | --- | --- | --- |",
    ]
    for f in figures:
        ref = f.reference
        if f.reference_value is not None:
            ref = f"{ref}: {_num(f.reference_value)} {f.unit}"
        ratio = "-" if f.ratio is None else f"{f.ratio:.2f}x"
        goal = "-"
        if f.goal_ratio is not None:
            goal = f"<= {f.goal_ratio:g}x " + ("met" if f.goal_met else "NOT met")
        name = f"{f.name} ({f.note})" if f.note else f.name
        lines.append(f"| {name} | {_num(f.value)} {f.unit} | {ref} | {ratio} | {goal} |")
    return "\n".join(lines)


def to_json(sections: dict[str, Sequence[Figure]]) -> str:
    return json.dumps(
        {key: [f.to_dict() for f in figures] for key, figures in sections.items()}, indent=2
    )
