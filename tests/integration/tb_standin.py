"""A ThingsBoard stand-in for end-to-end tests and the demo (no pytest imports here).

It plays ThingsBoard's side of the device API over a plain MQTT broker, the way
/work/shared/reference/thingsboard-ota.md describes the real server:

* it records every message the device sends on ``v1/devices/me/telemetry`` (flat
  ``{"k": v}``, ``{"ts": ms, "values": {...}}`` or a list of those), in arrival order;
* it answers ``v1/devices/me/attributes/request/{id}`` (``{"sharedKeys": "a,b,c"}``: ONE
  comma-separated string) on ``v1/devices/me/attributes/response/{id}`` with
  ``{"shared": {...}}`` holding the requested keys that are assigned, or ``{}``;
* :meth:`ThingsBoardStandIn.assign` pushes ``{"sw_title": .., "sw_version": ..}`` on
  ``v1/devices/me/attributes``; :meth:`ThingsBoardStandIn.unassign` pushes
  ``{"deleted": [...]}``;
* it never sets ``retain`` and publishes with QoS 1, and it records protocol violations of
  the device (retained messages, a list as ``sharedKeys``, non-JSON telemetry...) in
  :attr:`ThingsBoardStandIn.protocol_errors`.

Telemetry with the same ``ts`` and values received twice (an at-least-once re-send after a
lost PUBACK) is stored once by ThingsBoard (a time series is keyed by timestamp):
:meth:`sw_states` counts it once too; :attr:`duplicates` says how many were merged.

It is built on mqtt_thread.ThreadedMqttClient (as harness.MqttRecorder is) rather than on
the recorder because the demo imports it without pytest/testcontainers (harness imports
both), and because it keeps a persistent MQTT session (``clean_session=False``, fixed client
id): with a broker that has persistence enabled, nothing the device sends while the stand-in
reconnects after a broker restart is lost, which is what the real server guarantees.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gmqtt import Client as GmqttClient
from mqtt_thread import ThreadedMqttClient

TELEMETRY_TOPIC = "v1/devices/me/telemetry"
ATTRIBUTES_TOPIC = "v1/devices/me/attributes"
REQUEST_PREFIX = "v1/devices/me/attributes/request/"
RESPONSE_PREFIX = "v1/devices/me/attributes/response/"
OTA_KEYS = (
    "sw_title",
    "sw_version",
    "sw_size",
    "sw_checksum",
    "sw_checksum_algorithm",
    "sw_url",
    "sw_tag",
)
TERMINAL_STATES = ("UPDATED", "FAILED")
UPDATE_STATES = ("DOWNLOADING", "DOWNLOADED", "VERIFIED", "UPDATING", "UPDATED")


@dataclass(frozen=True)
class Telemetry:
    """One telemetry entry as ThingsBoard would store it."""

    values: Mapping[str, Any]
    ts: int | None
    """The device's timestamp (ms); ``None`` for the flat form (server time)."""
    received: float
    """``time.monotonic()`` at arrival."""
    index: int
    """Position among all entries received (duplicates included)."""

    @property
    def sw_state(self) -> str | None:
        state = self.values.get("sw_state")
        return state if isinstance(state, str) else None


@dataclass(frozen=True)
class AttributeRequest:
    request_id: str
    payload: Any
    answer: Mapping[str, Any]
    received: float


@dataclass
class _Assigned:
    values: dict[str, Any] = field(default_factory=dict)


class ThingsBoardStandIn(ThreadedMqttClient):
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
    ) -> None:
        super().__init__(
            host,
            port,
            client_id or f"tb-standin-{uuid.uuid4().hex[:8]}",
            clean_session=not persistent,
            reconnect_delay=0.5,
        )
        self._on_telemetry = on_telemetry
        self._telemetry: list[Telemetry] = []
        self._seen: set[tuple[int, str]] = set()
        self._received_count = 0
        self.duplicates = 0
        self._requests: list[AttributeRequest] = []
        self.protocol_errors: list[str] = []
        self._assigned = _Assigned()

    # -- lifecycle (start, close, is_connected, connections: ThreadedMqttClient) -------------
    def wait_connected(self, timeout: float = 15.0) -> None:
        """Connected and subscribed (SUBACK received)."""
        self._wait_ready(timeout)

    # -- the server side: shared attributes -------------------------------------------------------
    @property
    def assigned(self) -> dict[str, Any]:
        with self._cond:
            return dict(self._assigned.values)

    def assign(self, title: str, version: str, **extra: Any) -> None:
        """Assign a software package: remember it and push the changed shared attributes."""
        values = {"sw_title": title, "sw_version": version}
        values.update({key: value for key, value in extra.items() if key in OTA_KEYS})
        with self._cond:
            self._assigned.values = dict(values)
        self.push_attributes(values)

    def unassign(self) -> None:
        """Unassign the package: every sw_* key is deleted."""
        with self._cond:
            self._assigned.values = {}
        self.push_attributes({"deleted": list(OTA_KEYS)})

    def push_attributes(self, payload: bytes | str | Mapping[str, Any] | list[Any]) -> None:
        """Push anything on ``v1/devices/me/attributes`` (for hostile-input tests too)."""
        if isinstance(payload, Mapping | list):
            payload = json.dumps(payload)
        self._publish_blocking(ATTRIBUTES_TOPIC, payload, timeout=15, connect_timeout=10)

    # -- what the device sent -----------------------------------------------------------------
    @property
    def telemetry(self) -> list[Telemetry]:
        with self._cond:
            return list(self._telemetry)

    def mark(self) -> int:
        """A position in the telemetry; pass it as ``since`` to look only at what follows."""
        with self._cond:
            return len(self._telemetry)

    def sw_states(self, since: int = 0) -> list[str]:
        with self._cond:
            return [t.sw_state for t in self._telemetry[since:] if t.sw_state is not None]

    def state_entries(self, since: int = 0) -> list[Telemetry]:
        with self._cond:
            return [t for t in self._telemetry[since:] if t.sw_state is not None]

    def values_of(self, key: str, since: int = 0) -> list[Any]:
        """Every value reported for ``key`` (e.g. ``current_sw_version``), in order."""
        with self._cond:
            return [t.values[key] for t in self._telemetry[since:] if key in t.values]

    @property
    def attribute_requests(self) -> int:
        with self._cond:
            return len(self._requests)

    @property
    def requests(self) -> list[AttributeRequest]:
        with self._cond:
            return list(self._requests)

    def wait_for_telemetry(
        self, predicate: Callable[[Telemetry], bool], timeout: float = 30.0, since: int = 0
    ) -> Telemetry:
        """The first entry at or after ``since`` for which ``predicate`` holds."""

        def find() -> Telemetry | None:
            return next((t for t in self._telemetry[since:] if predicate(t)), None)

        with self._cond:
            if not self._cond.wait_for(lambda: find() is not None, timeout):
                raise TimeoutError(
                    f"no matching telemetry within {timeout}s; received since {since}: "
                    f"{[dict(t.values) for t in self._telemetry[since:]]}"
                )
            found = find()
            assert found is not None
            return found

    def wait_for_state(self, state: str, timeout: float = 30.0, since: int = 0) -> Telemetry:
        return self.wait_for_telemetry(lambda t: t.sw_state == state, timeout, since)

    def wait_for_value(
        self, key: str, value: Any, timeout: float = 30.0, since: int = 0
    ) -> Telemetry:
        return self.wait_for_telemetry(lambda t: t.values.get(key) == value, timeout, since)

    def wait_for_requests(self, count: int, timeout: float = 30.0) -> None:
        """Until at least ``count`` attribute requests were received (and answered)."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._requests) >= count, timeout):
                raise TimeoutError(
                    f"{len(self._requests)} attribute request(s) within {timeout}s, "
                    f"expected {count}"
                )

    def timeline(self) -> str:
        """Human-readable list of everything received (for failure messages)."""
        with self._cond:
            start = self._telemetry[0].received if self._telemetry else time.monotonic()
            lines = [
                f"[{t.received - start:+7.2f}s] #{t.index} ts={t.ts} {json.dumps(dict(t.values))}"
                for t in self._telemetry
            ]
            lines += [
                f"[{r.received - start:+7.2f}s] attribute request {r.request_id}: "
                f"{r.payload!r} -> {json.dumps(dict(r.answer))}"
                for r in self._requests
            ]
        return "\n".join(lines) or "(nothing received)"

    # -- ThreadedMqttClient hooks (loop thread) ---------------------------------------------
    def _subscriptions(self) -> Sequence[str]:
        return (TELEMETRY_TOPIC, REQUEST_PREFIX + "+")

    def _handle_message(
        self, client: GmqttClient, topic: str, payload: bytes, properties: Any
    ) -> None:
        if properties.get("retain"):
            self._violation(f"retained message from the device on {topic}")
        if topic == TELEMETRY_TOPIC:
            self._on_telemetry_message(payload)
        elif topic.startswith(REQUEST_PREFIX):
            self._on_request(client, topic[len(REQUEST_PREFIX) :], payload)

    def _violation(self, text: str) -> None:
        with self._cond:
            self.protocol_errors.append(text)

    def _on_telemetry_message(self, payload: bytes) -> None:
        try:
            data = json.loads(payload)
        except ValueError:
            self._violation(f"telemetry is not JSON: {payload[:80]!r}")
            return
        items = data if isinstance(data, list) else [data]
        now = time.monotonic()
        new: list[Telemetry] = []
        with self._cond:
            for item in items:
                if not isinstance(item, dict):
                    self._violation(f"telemetry item is not an object: {item!r}")
                    continue
                if "ts" in item and "values" in item:
                    ts, values = item["ts"], item["values"]
                    if not isinstance(ts, int) or not isinstance(values, dict):
                        self._violation(f"bad timestamped telemetry: {item!r}")
                        continue
                else:
                    ts, values = None, item
                index = self._received_count
                self._received_count += 1
                if ts is not None:
                    key = (ts, json.dumps(values, sort_keys=True))
                    if key in self._seen:
                        self.duplicates += 1
                        continue
                    self._seen.add(key)
                entry = Telemetry(values=dict(values), ts=ts, received=now, index=index)
                self._telemetry.append(entry)
                new.append(entry)
            self._cond.notify_all()
        if self._on_telemetry is not None:
            for entry in new:
                self._on_telemetry(entry)

    def _on_request(self, client: GmqttClient, request_id: str, payload: bytes) -> None:
        answer: dict[str, Any] = {}
        try:
            request = json.loads(payload)
        except ValueError:
            request = None
            self._violation(f"attribute request {request_id} is not JSON: {payload[:80]!r}")
        if isinstance(request, dict):
            keys = request.get("sharedKeys")
            if keys is not None and not isinstance(keys, str):
                self._violation(f"sharedKeys must be one comma-separated string, got {keys!r}")
            elif isinstance(keys, str):
                wanted = [key.strip() for key in keys.split(",") if key.strip()]
                with self._cond:
                    shared = {k: v for k, v in self._assigned.values.items() if k in wanted}
                if shared:
                    answer = {"shared": shared}
        client.publish(RESPONSE_PREFIX + request_id, json.dumps(answer), qos=1, retain=False)
        with self._cond:
            self._requests.append(AttributeRequest(request_id, request, answer, time.monotonic()))
            self._cond.notify_all()
