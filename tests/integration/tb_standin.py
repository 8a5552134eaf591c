"""A ThingsBoard stand-in for end-to-end tests and the demo (no pytest imports here).

It plays ThingsBoard's side of the device API over a real Mosquitto, the way
/work/shared/reference/thingsboard-ota.md describes the real server, including what hurts:

* :meth:`ThingsBoardStandIn.assign` writes ``target_sw_*`` and ``sw_state=QUEUED`` (its clock),
  and ``pacing`` seconds later (the OTA queue) ``sw_state=INITIATED``, then saves the shared
  attributes and pushes them as TWO messages, values and ``{"deleted": [...]}``, in an order
  set by ``push_order`` ("random" with ``seed``, "values-first", "deleted-first"); until then
  attribute requests answer the OLD attributes (tb_ota). The same package again does nothing;
  :meth:`unassign` pushes the nine-key deletion and changes no time series;
* telemetry goes through tb_timeseries: type cast, flat items stamped on arrival with
  :attr:`clock`, the latest value replaced only by a ts that is not older; :meth:`dashboard`
  says what the stock dashboard shows (tb_dashboard);
* attribute requests are answered as tb_device_api reads them (``sharedKeys`` not trimmed);
* :meth:`rpc` makes a two-way server-side RPC call, ids from 0, 10 s timeout (tb_rpc);
* with ``provision=ProvisionProfile(key, secret)`` it answers device provisioning requests
  as the server does, and accepts the tokens it gives out (tb_provision);
* with ``gate=True`` (or ``TEG_TEST_TB_GATE=1``) devices connect to :attr:`device_port`, a
  tb_gate.SessionGate that closes their session where the server would (invalid JSON, a bad
  request id, over 65536 bytes, a second session with the same token). Without it those are
  only recorded in :attr:`protocol_errors`.

The history of what the device sent is kept as it arrived (:attr:`telemetry`, :meth:`sw_states`:
device states only, QUEUED/INITIATED are the server's and live in :attr:`series`). Timestamped
telemetry received twice (an at-least-once re-send) is kept once; :attr:`duplicates` counts them.
The MQTT session is persistent by default (fixed client id, ``clean_session=False``) so a
broker with persistence loses nothing the device sends while the stand-in reconnects.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mqtt_thread import ThreadedMqttClient
from tb_clock import Clock
from tb_dashboard import Dashboard, dashboard_of
from tb_device_api import ATTRIBUTES_TOPIC, MAX_MESSAGE_SIZE, TELEMETRY_TOPIC
from tb_gate import ClosedSession, SessionGate
from tb_ota import OTA_KEYS, UNASSIGN_KEYS, Package
from tb_provision import ProvisionProfile, ProvisionSide
from tb_rpc import RpcSide, RpcTimeout
from tb_standin_device import AttributeRequest, DeviceSide, Telemetry
from tb_timeseries import TimeSeries

__all__ = [
    "ATTRIBUTES_TOPIC",
    "DEFAULT_PACING_S",
    "OTA_KEYS",
    "TELEMETRY_TOPIC",
    "TERMINAL_STATES",
    "UNASSIGN_KEYS",
    "UPDATE_STATES",
    "AttributeRequest",
    "Clock",
    "ClosedSession",
    "Dashboard",
    "Package",
    "ProvisionProfile",
    "Push",
    "RpcTimeout",
    "Telemetry",
    "ThingsBoardStandIn",
]
TERMINAL_STATES = ("UPDATED", "FAILED")
UPDATE_STATES = ("DOWNLOADING", "DOWNLOADED", "VERIFIED", "UPDATING", "UPDATED")
DEFAULT_PACING_S = 0.2
PUSH_ORDERS = ("random", "values-first", "deleted-first")


@dataclass(frozen=True)
class Push:
    """One message the stand-in pushed on ``v1/devices/me/attributes``."""

    payload: Any
    kind: str
    """``"values"``, ``"deleted"`` (an assignment's two), ``"unassign"`` or ``"raw"``."""
    ts: int
    received: float


class ThingsBoardStandIn(ProvisionSide, RpcSide, DeviceSide, ThreadedMqttClient):
    """See the module docstring. Thread-safe; start() before use, close() at the end.

    ``on_telemetry(entry)`` (optional) is called on the MQTT thread for every new entry
    (after de-duplication); it must not block.
    """

    _label = "ThingsBoard stand-in"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str | None = None,
        persistent: bool = True,
        on_telemetry: Callable[[Telemetry], None] | None = None,
        pacing: float = DEFAULT_PACING_S,
        push_order: str = "random",
        seed: int | None = None,
        clock: Clock | None = None,
        gate: bool | None = None,
        tokens: Sequence[str] | None = None,
        max_message_size: int = MAX_MESSAGE_SIZE,
        provision: ProvisionProfile | None = None,
    ) -> None:
        super().__init__(
            host,
            port,
            client_id or f"tb-standin-{uuid.uuid4().hex[:8]}",
            clean_session=not persistent,
            reconnect_delay=0.5,
        )
        if push_order not in PUSH_ORDERS:
            raise ValueError(f"push_order must be one of {PUSH_ORDERS}")
        self._on_telemetry = on_telemetry
        self.pacing, self.push_order = pacing, push_order
        self.seed = random.randrange(2**32) if seed is None else seed
        self._rng = random.Random(self.seed)
        self.clock = clock or Clock()
        self.series = TimeSeries()
        self.max_message_size = max_message_size
        if gate is None:
            gate = os.environ.get("TEG_TEST_TB_GATE", "").strip().lower() in ("1", "true")
        self.gate = (
            SessionGate(host, port, tokens=tokens, max_message_size=max_message_size)
            if gate
            else None
        )
        self._telemetry: list[Telemetry] = []
        self._seen: set[tuple[int, str]] = set()
        self._received_count = 0
        self.duplicates = 0
        self._requests: list[AttributeRequest] = []
        self._errors: list[str] = []
        self._shared: dict[str, Any] = {}
        self._package: Package | None = None
        self._generation = 0
        self._pending = 0
        self._pushes: list[Push] = []
        self._push_lock = asyncio.Lock()  # binds to the MQTT loop on first use
        self._log: list[tuple[float, str]] = []
        self._init_rpc()  # tb_rpc: rpc(method, params, timeout)
        self._init_provision(provision)  # tb_provision: provisioning requests

    # -- lifecycle (start, close, is_connected, connections: ThreadedMqttClient) -------------
    def start(self, timeout: float = 15.0) -> ThingsBoardStandIn:
        if self.gate is not None:
            self.gate.start()
        try:
            super().start(timeout)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        super().close()
        if self.gate is not None:
            self.gate.close()

    def wait_connected(self, timeout: float = 15.0) -> None:
        """Connected and subscribed (SUBACK received)."""
        self._wait_ready(timeout)

    @property
    def device_host(self) -> str:
        return self.gate.host if self.gate is not None else self.host

    @property
    def device_port(self) -> int:
        """Where the device connects: the gate's port, or the broker's without a gate."""
        return self.gate.port if self.gate is not None else self.port

    @property
    def closed_sessions(self) -> list[ClosedSession]:
        """Sessions the gate closed (always empty without a gate)."""
        return [] if self.gate is None else self.gate.closed_sessions

    @property
    def protocol_errors(self) -> list[str]:
        """The device's protocol violations: seen here, and the gate's."""
        with self._cond:
            mine = list(self._errors)
        return mine + ([] if self.gate is None else self.gate.protocol_errors)

    # -- the server side: assignments and shared attributes ---------------------------------
    @property
    def assigned(self) -> dict[str, Any]:
        """The device's shared attributes now (the OLD ones while an assignment is queued)."""
        with self._cond:
            return dict(self._shared)

    @property
    def package(self) -> Package | None:
        """The package assigned to the device (queued or processed), or None."""
        with self._cond:
            return self._package

    def assign(
        self,
        title: str,
        version: str,
        *,
        size: int | None = None,
        checksum: str | None = None,
        checksum_algorithm: str | None = None,
        url: str | None = None,
        tag: str | None = None,
    ) -> bool:
        """Assign a package: QUEUED now, INITIATED and the pushes after ``pacing`` seconds
        (in the background). False, and nothing happens, if it is the package assigned."""
        package = Package(title, version, size, checksum, checksum_algorithm, url, tag)
        with self._cond:
            if package.same_package(self._package):
                self._note(f"assign {title} {version}: the same package, nothing happens")
                return False
            self._package = package
            self._generation += 1
            generation, ts = self._generation, self.clock.now_ms()
            self._save_server(ts, package.queued_series(ts))
            self._pending += 1
        asyncio.run_coroutine_threadsafe(self._process(package, generation), self._loop)
        return True

    def unassign(self) -> bool:
        """Unassign: the nine-key deletion push, no time series change. False if nothing
        was assigned (then nothing happens)."""
        with self._cond:
            if self._package is None:
                return False
            self._package = None
            self._generation += 1
            for key in UNASSIGN_KEYS:
                self._shared.pop(key, None)
        self._push_soon([({"deleted": list(UNASSIGN_KEYS)}, "unassign")])
        return True

    def push_attributes(self, payload: bytes | str | Mapping[str, Any] | list[Any]) -> None:
        """Push anything on ``v1/devices/me/attributes`` (for hostile-input tests too)."""
        self._push_soon([(payload, "raw")])

    def _push_soon(self, messages: list[tuple[Any, str]]) -> None:
        """Push and wait for the PUBACKs; from the MQTT thread (a callback), just start it."""
        if threading.current_thread() is self._thread:
            self._loop.create_task(self._push(messages))
        else:
            self._run(self._push(messages), 45)

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Until every assignment is processed (INITIATED written and pushed) or superseded."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._pending == 0, timeout):
                raise TimeoutError(f"{self._pending} assignment(s) still queued after {timeout}s")

    @property
    def pushes(self) -> list[Push]:
        with self._cond:
            return list(self._pushes)

    async def _process(self, package: Package, generation: int) -> None:
        try:
            await asyncio.sleep(self.pacing)
            async with self._push_lock:  # an unassign meanwhile pushes after these two
                await self._processed(package, generation)
        except Exception as exc:
            self.listener_errors.append(exc)
        finally:
            with self._cond:
                self._pending -= 1
                self._cond.notify_all()

    async def _processed(self, package: Package, generation: int) -> None:
        """The OTA queue got to the device: INITIATED, save the attributes, push them."""
        with self._cond:
            if generation != self._generation:  # re-assigned or unassigned meanwhile
                self._note(f"{package.version}: superseded while queued")
                return
            self._save_server(self.clock.now_ms(), {"sw_state": "INITIATED"})
            values, deleted = package.attributes()
            self._shared.update(values)
            for key in deleted:
                self._shared.pop(key, None)
            messages: list[tuple[Any, str]] = [(values, "values")]
            if deleted:
                messages.append(({"deleted": deleted}, "deleted"))
            if self.push_order == "deleted-first" or (
                self.push_order == "random" and self._rng.random() < 0.5
            ):
                messages.reverse()
        await self._publish_pushes(messages)

    async def _push(self, messages: list[tuple[Any, str]]) -> None:
        async with self._push_lock:  # one batch at a time: an assignment's two stay together
            await self._publish_pushes(messages)

    async def _publish_pushes(self, messages: list[tuple[Any, str]]) -> None:
        for payload, kind in messages:
            data = json.dumps(payload) if isinstance(payload, Mapping | list) else payload
            await self._publish_async(ATTRIBUTES_TOPIC, data, 1, False, True, 30)
            with self._cond:
                push = Push(payload, kind, self.clock.now_ms(), time.monotonic())
                self._pushes.append(push)
                self._note(f"push ({kind}) {str(data)[:200]}")
                self._cond.notify_all()

    def _save_server(self, ts: int, values: Mapping[str, Any]) -> None:
        self.series.save(ts, values, "server")
        self._note(f"server writes ts={ts} {json.dumps(dict(values))}")
        self._cond.notify_all()

    # -- the stock dashboard ------------------------------------------------------------------
    def dashboard(self) -> Dashboard:
        """What the stock "Software" dashboard shows now (tab, progress, versions...)."""
        return dashboard_of(self.series)

    def latest(self, key: str, default: Any = None) -> Any:
        """The latest value of a time series by the ts rule (cast as stored)."""
        return self.series.value(key, default)

    def wait_for_dashboard(self, tab: str | None, timeout: float = 30.0) -> Dashboard:
        """Until the dashboard lists the device under ``tab`` (None: in no tab)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.dashboard().tab == tab, timeout):
                raise TimeoutError(
                    f"dashboard tab is not {tab!r} within {timeout}s: "
                    f"{self.dashboard().describe()}\n{self.timeline()}"
                )
        return self.dashboard()
