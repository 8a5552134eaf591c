"""The three fleet scenarios, run in order on one fleet: what is done and what is counted.

One *variant* (with or without jitter) builds a fresh stand-in and N fresh gateways on the
shared Mosquitto, connects them all, then runs, in order:

* ``broker_restart``: every session established (older than the link's stable-session
  time, so the loss counts as an outage, not a flapping broker), then a real restart of the
  Mosquitto container. Timed from the moment it stopped.
* ``fleet_assignment``: a new version assigned to the whole fleet at once (no pacing), then
  another assigned as ThingsBoard paces it (``pack_size`` devices every ``pack_interval_s``,
  the first ``paced_packs`` packs only: at 100 a minute a whole fleet takes N/100 minutes).
* ``git_rate_limited``: the Git origin answers 429 for ``rate_limit_s`` seconds and a new
  version is assigned to the whole fleet at once.

Counted at the stand-in (fleet_gate.py, fleet_server.py): CONNACKs, attribute requests, Git
fetches, OTA states; times are ``time.monotonic()`` across processes.
"""

from __future__ import annotations

import bisect
import math
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fleet_stats
from fleet_gateways import Fleet, FleetSettings, SimulatedGateway
from fleet_host import CpuSlots, RunnerThread
from fleet_standin import FleetStandin, token_of

from teg_ota.adapters.mqtt import MqttSettings
from teg_ota.domain.core import jitter
from teg_ota.domain.model.settings import UpdateSettings

TAGS = {f"v1.{n}": str(n + 1) * 40 for n in range(4)}
MQTT, UPDATE = MqttSettings(), UpdateSettings()
RATES = {"connections": "connected", "requests": "request", "fetches": "fetch"}
DIAGNOSTICS = ("attempt", "refused", "server_lost", "answered")


@dataclass(frozen=True)
class Options:
    size: int = 1000
    rate_limit_s: float = 60.0
    pack_size: int = 100
    pack_interval_s: float = 60.0
    paced_packs: int = 2
    seed: int = 16
    data: Path = Path(tempfile.gettempdir())


@dataclass
class Run:
    """One scenario of one variant: the JSON figures and the per-second series to plot."""

    figures: dict[str, Any]
    series: dict[str, list[int]] = field(default_factory=dict)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Recorder:
    """Every stamp the stand-in took, pulled as the scenario runs."""

    def __init__(self, standin: FleetStandin) -> None:
        self._standin = standin
        self.events: dict[str, list[float]] = defaultdict(list)

    def pull(self) -> None:
        for kind, stamps in self._standin.events().items():
            self.events[kind].extend(stamps)
            self.events[kind].sort()  # nearly sorted already: linear

    def since(self, kind: str, start: float) -> list[float]:
        stamps = self.events.get(kind, [])
        return stamps[bisect.bisect_left(stamps, start) :]

    def wait(self, done: Callable[[], bool], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.pull()
            if done():
                return True
            time.sleep(0.25)
        self.pull()
        return done()


def _rates(
    recorder: Recorder, start: float, end: float
) -> tuple[dict[str, Any], dict[str, list[int]]]:
    figures: dict[str, Any] = {}
    series: dict[str, list[int]] = {}
    for name, kind in RATES.items():
        stamps = recorder.since(kind, start)
        peak, p99 = fleet_stats.rate_figures(stamps, start, end)
        figures[f"peak_{name}_per_s"], figures[f"p99_{name}_per_s"] = peak, p99
        series[name] = fleet_stats.bins(stamps, start, end)
    for kind in DIAGNOSTICS:  # not figures: kept for a look at a run that went wrong
        series[kind] = fleet_stats.bins(recorder.since(kind, start), start, end)
    return figures, series


def _terminal(recorder: Recorder, start: float) -> int:
    return len(recorder.since("UPDATED", start)) + len(recorder.since("FAILED", start))


class Variant:
    """One fleet, with or without jitter, through every scenario (see the module doc)."""

    def __init__(self, broker_port: int, options: Options, jitter_on: bool) -> None:
        self.options, self.jitter = options, jitter_on
        size = options.size
        self.standin = FleetStandin(broker_port, size, "v1.0", TAGS)
        self.recorder = Recorder(self.standin)
        settings = FleetSettings(jitter=jitter_on, seed=options.seed)
        self.rss_before = rss_mb()
        self.rss_idle = self.rss_before  # set by the variant's process once all connected
        host = CpuSlots(), RunnerThread()
        self.fleet = Fleet(
            [
                SimulatedGateway(
                    i,
                    token_of(i),
                    self.standin.gate_port(i),
                    f"http://127.0.0.1:{self.standin.git_port}/{token_of(i)}/refs",
                    options.data / f"{'j' if jitter_on else 'n'}{i}",
                    settings,
                    host,
                )
                for i in range(size)
            ]
        )
        self.started = time.monotonic()
        self.fleet.start()
        if not self.recorder.wait(lambda: self.fleet.connected() >= size, 120):
            print(f"only {self.fleet.connected()} of {size} gateways connected")

    def _base(self, window_s: float, step_s: float) -> dict[str, Any]:
        return {
            "fleet_size": self.options.size,
            "jitter": self.jitter,
            "window_s": window_s,
            "backoff_step_s": step_s,
            # Now: after an assignment it includes each gateway's worker thread.
            "rss_mb_per_gateway": round((rss_mb() - self.rss_before) / self.options.size, 4),
            "rss_mb_per_gateway_idle": round(
                (self.rss_idle - self.rss_before) / self.options.size, 4
            ),
        }

    def broker_restart(self, restart: Callable[[], tuple[float, float]]) -> Run:
        size = self.options.size
        last_connect = max(self.recorder.events.get("connected", [self.started]))
        time.sleep(max(0.0, jitter.STABLE_SESSION_S + 1 - (time.monotonic() - last_connect)))
        self.recorder.pull()
        down, up = restart()
        limit = MQTT.connect_window_s + MQTT.connect_backoff_max_s + 30
        # Since the stop, not since the port opened again: the fleet's first CONNECTs race
        # the readiness probe, and one CONNACK before ``up`` would make 100 % unreachable.
        self.recorder.wait(lambda: len(self.recorder.since("connected", down)) >= size, limit)
        time.sleep(MQTT.attribute_request_window_s + 1)
        self.recorder.pull()
        end = time.monotonic()
        figures, series = _rates(self.recorder, down, end)
        back = fleet_stats.time_to_fraction(self.recorder.since("connected", down), down, size)
        figures |= {"p99_reconnected_s": back, "outage_s": round(up - down, 2)}
        return Run(
            self._base(MQTT.connect_window_s, MQTT.connect_backoff_initial_s) | figures, series
        )

    def _assignment(
        self,
        version: str,
        size: int,
        timeout_s: float,
        pack_size: int = 0,
        pack_interval_s: float = 0.0,
        packs: int = 0,
        fraction: float = 1.0,
    ) -> Run:
        start = time.monotonic()
        self.standin.assign(version, pack_size, pack_interval_s, packs)
        needed = math.ceil(fraction * size)
        self.recorder.wait(lambda: _terminal(self.recorder, start) >= needed, timeout_s)
        time.sleep(1 if fraction >= 1 else 5)
        self.recorder.pull()
        end = time.monotonic()
        figures, series = _rates(self.recorder, start, end)
        updated = fleet_stats.time_to_fraction(self.recorder.since("UPDATED", start), start, size)
        figures |= {
            "p99_updated_s": updated,
            "updated": len(self.recorder.since("UPDATED", start)),
            "failed": len(self.recorder.since("FAILED", start)),
            "fetches_refused": len(self.recorder.since("fetch_429", start)),
        }
        # Reports, not devices: one resent after a lost session counts twice, hence max().
        figures["pending"] = max(0, size - figures["updated"] - figures["failed"])
        window = FleetSettings().update_start_window_s if self.jitter else 0.0
        base = self._base(window, UPDATE.fetch_retry.initial_s)
        return Run(base | figures, series)

    def fleet_assignment(self) -> Run:
        options = self.options
        run = self._assignment("v1.1", options.size, 300)
        paced_size = min(options.size, options.pack_size * options.paced_packs)
        timeout = options.pack_interval_s * options.paced_packs + 120
        paced = self._assignment(
            "v1.2",
            paced_size,
            timeout,
            pack_size=options.pack_size,
            pack_interval_s=options.pack_interval_s,
            packs=options.paced_packs,
        )
        paced.figures |= {
            "pack_size": options.pack_size,
            "pack_interval_s": options.pack_interval_s,
        }
        run.figures["paced"] = paced.figures
        run.series |= {f"paced_{k}": v for k, v in paced.series.items()}
        return run

    def git_rate_limited(self) -> Run:
        limit = self.options.rate_limit_s
        self.standin.rate_limit(limit)
        retry = UPDATE.fetch_retry
        # Until 99 % are UPDATED or FAILED (then 5 s more): the last percent's retries can
        # be minutes apart (steps up to max_s); they are counted ``pending``.
        timeout = limit + retry.max_s * retry.attempts
        run = self._assignment("v1.3", self.options.size, timeout, fraction=0.99)
        run.figures["rate_limit_s"] = limit
        return run
