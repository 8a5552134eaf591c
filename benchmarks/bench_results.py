"""The update benchmark's figures (samples of updates and restarts, the disk report) and
how they are printed: a table, or JSON."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from bench_reference import StopStart
from bench_table import Figure

# ---------------------------------------------------------------------------- samples


@dataclass(slots=True)
class UpdateSample:
    source: str | None
    target: str
    states: list[str]
    total_s: float
    built: bool
    used_build_cache: bool
    prepare_s: float | None = None
    """DOWNLOADING -> VERIFIED (fetch, resolve, reset, build, verify)."""
    swap_s: float | None = None
    """UPDATING -> new container's start event."""
    stop_s: float | None = None
    """UPDATING -> old container's die event (SIGTERM handling)."""
    downtime_s: float | None = None
    """Old container's die event -> new container's start event."""
    health_s: float | None = None
    """New container's start event -> UPDATED (health grace, journal, store)."""
    housekeeping_s: float | None = None
    """UPDATED -> update() returned (prune, image GC)."""
    to_updated_s: float | None = None
    """update() called (the assignment) -> UPDATED."""


@dataclass(slots=True)
class RestartSample:
    exit_code: str | None
    detect_s: float
    """die event -> the watchdog tick that noticed (the loop's wait_for_exit returned)."""
    backoff_s: float
    """noticing tick -> restarting tick."""
    kill_to_running_s: float
    """``docker kill`` issued -> new container's start event."""
    downtime_s: float
    """die event -> start event."""


@dataclass(slots=True)
class DiskReport:
    versions_built: int
    images_kept: list[str]
    sizes_bytes: list[int]
    expected_kept: int
    unique_bytes: int | None
    """Bytes only these images use (``docker system df``: size minus shared layers)."""

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes_bytes)


@dataclass(slots=True)
class Results:
    rounds: int
    health_grace_s: float
    backoff_initial_s: float
    engine: str
    install: UpdateSample | None = None
    uncached: list[UpdateSample] = field(default_factory=list)
    cached: list[UpdateSample] = field(default_factory=list)
    gc_updates: list[UpdateSample] = field(default_factory=list)
    rollbacks: list[UpdateSample] = field(default_factory=list)
    restarts: list[RestartSample] = field(default_factory=list)
    uncached_ref: list[StopStart] = field(default_factory=list)
    cached_ref: list[StopStart] = field(default_factory=list)
    rollback_ref: list[StopStart] = field(default_factory=list)
    """A bare stop + start of a pre-created container, measured right after each round."""
    restart_ref: list[float] = field(default_factory=list)
    """The engine's ``--restart=always``: a crash's die -> start, after each restart round."""
    disk: DiskReport | None = None
    wall_s: float = 0.0


# ----------------------------------------------------------------------------- output


def _ms(values: Sequence[float | None]) -> tuple[int, str, str, str]:
    present = [v * 1000 for v in values if v is not None]
    if not present:
        return 0, "-", "-", "-"
    return (
        len(present),
        f"{min(present):.0f}",
        f"{statistics.median(present):.0f}",
        f"{max(present):.0f}",
    )


def _row(label: str, values: Sequence[float | None]) -> str:
    n, lo, med, hi = _ms(values)
    return f"  {label:<44} {n:>3} {lo:>8} {med:>8} {hi:>8}"


def render(results: Results) -> str:
    out: list[str] = []
    head = f"  {'':<44} {'n':>3} {'min':>8} {'median':>8} {'max':>8}"
    out.append(
        f"teg-ota update benchmark: {results.rounds} round(s), {results.engine}, "
        f"health grace {results.health_grace_s:g} s, all times in ms"
    )
    unc, cac, rst = results.uncached, results.cached, results.restarts
    out.append("")
    out.append("1. swap downtime (old 'die' -> new 'start' event)")
    out.append(head)
    out.append(_row("update, image built", [s.downtime_s for s in unc]))
    out.append(_row("update, image cached", [s.downtime_s for s in cac]))
    out.append(_row("rollback (health gate failed)", [s.downtime_s for s in results.rollbacks]))
    out.append(_row("bare stop + start (reference)", [r.downtime_s for r in results.cached_ref]))
    out.append("")
    out.append("2. update phases, image not cached (telemetry + engine event timestamps)")
    out.append(head)
    out.append(_row("prepare: DOWNLOADING -> VERIFIED", [s.prepare_s for s in unc]))
    out.append(_row("swap: UPDATING -> new 'start'", [s.swap_s for s in unc]))
    out.append(_row("  of which stop: UPDATING -> old 'die'", [s.stop_s for s in unc]))
    out.append(_row("  of which downtime: 'die' -> 'start'", [s.downtime_s for s in unc]))
    out.append(_row("health grace: new 'start' -> UPDATED", [s.health_s for s in unc]))
    out.append(_row("housekeeping: UPDATED -> returned", [s.housekeeping_s for s in unc]))
    out.append(_row("total update", [s.total_s for s in unc]))
    cache_hits = sum(s.used_build_cache for s in unc)
    out.append(f"  (builds that hit Docker's build cache: {cache_hits} of {len(unc)})")
    out.append("")
    out.append("3. cached update (image already built)")
    out.append(head)
    out.append(_row("prepare: DOWNLOADING -> VERIFIED", [s.prepare_s for s in cac]))
    out.append(_row("downtime: 'die' -> 'start'", [s.downtime_s for s in cac]))
    out.append(_row("total update", [s.total_s for s in cac]))
    out.append("")
    out.append(
        f"4. restart after 'docker kill' (runner-style loop, backoff initial "
        f"{results.backoff_initial_s:g} s, streak reset before each kill)"
    )
    out.append(head)
    out.append(_row("detection: 'die' -> watchdog tick", [r.detect_s for r in rst]))
    out.append(_row("backoff: noticing tick -> restarting tick", [r.backoff_s for r in rst]))
    out.append(_row("downtime: 'die' -> 'start'", [r.downtime_s for r in rst]))
    out.append(_row("kill -> running ('start' event)", [r.kill_to_running_s for r in rst]))
    out.append(_row("engine --restart=always: die -> start", results.restart_ref))
    disk = results.disk
    if disk is not None:
        out.append("")
        out.append(f"5. disk after building {disk.versions_built} versions (keep_older_images=1)")
        kept = ", ".join(disk.images_kept)
        out.append(
            f"  controller images kept: {len(disk.images_kept)} of {disk.versions_built} built "
            f"(expected {disk.expected_kept}: current, previous, 1 older): {kept}"
        )
        out.append(
            f"  sum of their sizes (list_controller_images): {disk.total_bytes / 1e6:.2f} MB "
            f"({disk.total_bytes} B)"
        )
        if disk.unique_bytes is not None:
            out.append(
                f"  bytes only they use (docker df, shared base layers excluded): "
                f"{disk.unique_bytes} B"
            )
    if results.install is not None:
        out.append("")
        out.append(
            f"initial install: {results.install.total_s * 1000:.0f} ms; "
            f"benchmark wall time: {results.wall_s:.1f} s"
        )
    return "\n".join(out)


def to_json(results: Results) -> str:
    data = asdict(results)

    def summary(values: Sequence[float | None]) -> dict[str, float | None]:
        present = [v * 1000 for v in values if v is not None]
        if not present:
            return {"n": 0, "min_ms": None, "median_ms": None, "max_ms": None}
        return {
            "n": len(present),
            "min_ms": round(min(present), 1),
            "median_ms": round(statistics.median(present), 1),
            "max_ms": round(max(present), 1),
        }

    data["summary"] = {
        "swap_downtime_built": summary([s.downtime_s for s in results.uncached]),
        "swap_downtime_cached": summary([s.downtime_s for s in results.cached]),
        "prepare_uncached": summary([s.prepare_s for s in results.uncached]),
        "swap_uncached": summary([s.swap_s for s in results.uncached]),
        "health_grace_uncached": summary([s.health_s for s in results.uncached]),
        "housekeeping_uncached": summary([s.housekeeping_s for s in results.uncached]),
        "total_uncached": summary([s.total_s for s in results.uncached]),
        "total_cached": summary([s.total_s for s in results.cached]),
        "restart_detection": summary([r.detect_s for r in results.restarts]),
        "restart_kill_to_running": summary([r.kill_to_running_s for r in results.restarts]),
        "restart_downtime": summary([r.downtime_s for r in results.restarts]),
    }
    if results.disk is not None:
        data["disk"]["total_bytes"] = results.disk.total_bytes
    return json.dumps(data, indent=2)


# ---------------------------------------------------------------------------- figures


def _paired(
    values: Sequence[float | None], refs: Sequence[float]
) -> tuple[list[float], list[float]]:
    """The rounds where both were measured (a ratio is only taken within one round)."""
    pairs = [(v, r) for v, r in zip(values, refs, strict=False) if v is not None]
    return [v for v, _ in pairs], [r for _, r in pairs]


def figures(results: Results) -> list[Figure]:
    """The update benchmark's figures, each beside its limit measured in the same rounds."""
    bare = "bare docker stop + start of a pre-created container"
    out: list[Figure] = []
    for label, samples, refs in (
        ("swap downtime, update (image built)", results.uncached, results.uncached_ref),
        ("swap downtime, update (image cached)", results.cached, results.cached_ref),
        ("swap downtime, rollback", results.rollbacks, results.rollback_ref),
    ):
        values, ref_values = _paired([s.downtime_s for s in samples], [r.downtime_s for r in refs])
        if values:
            out.append(
                Figure(
                    label,
                    "s",
                    values,
                    f"{bare} (die -> start)",
                    ref_values,
                    1.05,
                    note="old die -> new start",
                )
            )
    delay = results.backoff_initial_s
    values, ref_values = _paired(
        [r.downtime_s - delay for r in results.restarts], results.restart_ref
    )
    if values:
        out.append(
            Figure(
                "crash to running, beyond the first delay",
                "s",
                values,
                "the engine's own --restart=always (crash: die -> start)",
                ref_values,
                1.0,
                note=f"die -> start minus {delay:g} s",
            )
        )
    grace = results.health_grace_s
    values, ref_values = _paired(
        [None if s.to_updated_s is None else s.to_updated_s - grace for s in results.cached],
        [r.total_s for r in results.cached_ref],
    )
    if values:
        out.append(
            Figure(
                "cached update overhead, beyond the grace",
                "s",
                values,
                f"{bare} (stop call -> start)",
                ref_values,
                1.2,
                note=f"assignment -> UPDATED minus {grace:g} s",
            )
        )
    return out
