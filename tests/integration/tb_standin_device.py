"""The device side of tb_standin.ThingsBoardStandIn: what the device sent, and the answers.

No pytest imports. :class:`DeviceSide` is a mixin of the stand-in (split off for size): it
records telemetry (stored through tb_timeseries with the ts rule and the type cast), answers
attribute requests (tb_device_api), notes protocol violations and offers the waits.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gmqtt import Client as GmqttClient
from tb_clock import Clock
from tb_device_api import (
    MAX_MESSAGE_SIZE,
    REQUEST_PREFIX,
    RESPONSE_PREFIX,
    TELEMETRY_TOPIC,
    SessionClosed,
    parse_attribute_request,
    publish_remaining_length,
)
from tb_timeseries import TelemetryError, TimeSeries, parse_telemetry


@dataclass(frozen=True)
class Telemetry:
    """One telemetry item as the device sent it."""

    values: Mapping[str, Any]
    """As sent (``"1.10"`` stays a string here; ``stored`` has it cast)."""
    ts: int | None
    """The device's timestamp (ms); ``None`` for the flat form (server time)."""
    received: float
    """``time.monotonic()`` at arrival."""
    index: int
    """Position among all entries received (duplicates included)."""
    server_ts: int = 0
    """The ts it was stored with: ``ts``, or the stand-in's clock on arrival."""
    stored: Mapping[str, Any] | None = None
    """The values as stored (type cast, nulls dropped)."""

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


class DeviceSide:
    """Mixin: needs the attributes below (set by ThingsBoardStandIn.__init__)."""

    _cond: threading.Condition
    _telemetry: list[Telemetry]
    _seen: set[tuple[int, str]]
    _received_count: int
    duplicates: int
    _requests: list[AttributeRequest]
    _errors: list[str]
    _shared: dict[str, Any]
    _log: list[tuple[float, str]]
    _on_telemetry: Callable[[Telemetry], None] | None
    clock: Clock
    series: TimeSeries
    seed: int
    max_message_size: int = MAX_MESSAGE_SIZE

    def _note(self, text: str) -> None:
        """One line of :meth:`timeline` (hold ``_cond`` or be the only writer)."""
        self._log.append((time.monotonic(), text))

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
        """The ``sw_state`` values the DEVICE sent, in arrival order (not QUEUED/INITIATED)."""
        with self._cond:
            return [t.sw_state for t in self._telemetry[since:] if t.sw_state is not None]

    def state_entries(self, since: int = 0) -> list[Telemetry]:
        with self._cond:
            return [t for t in self._telemetry[since:] if t.sw_state is not None]

    def values_of(self, key: str, since: int = 0) -> list[Any]:
        """Every value reported for ``key`` (e.g. ``current_sw_version``), as sent, in order."""
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
        """Human-readable list of everything that happened (for failure messages)."""
        with self._cond:
            events = sorted(self._log, key=lambda event: event[0])
        if not events:
            return f"(nothing happened; push order seed {self.seed})"
        start = events[0][0]
        lines = [f"[{at - start:+7.2f}s] {text}" for at, text in events]
        return "\n".join([f"push order seed {self.seed}", *lines])

    # -- ThreadedMqttClient hooks (loop thread) ---------------------------------------------
    def _subscriptions(self) -> Sequence[str]:
        return (TELEMETRY_TOPIC, REQUEST_PREFIX + "+")

    def _handle_message(
        self, client: GmqttClient, topic: str, payload: bytes, properties: Any
    ) -> None:
        if properties.get("retain"):
            self._violation(f"retained message from the device on {topic}")
        size = publish_remaining_length(topic, payload)
        if size > self.max_message_size:
            self._violation(f"{topic}: {size} bytes over {self.max_message_size} (closes)")
        if topic == TELEMETRY_TOPIC:
            self._on_telemetry_message(payload)
        elif topic.startswith(REQUEST_PREFIX):
            self._on_request(client, topic[len(REQUEST_PREFIX) :], payload)

    def _violation(self, text: str) -> None:
        with self._cond:
            self._errors.append(text)
            self._note(f"VIOLATION {text}")

    def _on_telemetry_message(self, payload: bytes) -> None:
        try:
            entries = parse_telemetry(payload)
        except TelemetryError as exc:
            self._violation(f"telemetry refused, the server closes the session: {exc}")
            return
        now, arrival = time.monotonic(), self.clock.now_ms()
        new: list[Telemetry] = []
        with self._cond:
            for entry in entries:
                index = self._received_count
                self._received_count += 1
                if entry.device_ts is not None:
                    key = (entry.device_ts, json.dumps(entry.raw, sort_keys=True))
                    if key in self._seen:
                        self.duplicates += 1
                        continue
                    self._seen.add(key)
                ts = arrival if entry.device_ts is None else entry.device_ts
                self.series.save(ts, entry.values, "device")
                telemetry = Telemetry(entry.raw, entry.device_ts, now, index, ts, entry.values)
                self._telemetry.append(telemetry)
                new.append(telemetry)
                form = "flat, stamped" if entry.device_ts is None else "device ts"
                self._note(f"#{index} telemetry ({form} {ts}) {json.dumps(entry.raw)[:300]}")
            self._cond.notify_all()
        if self._on_telemetry is not None:
            for telemetry in new:
                self._on_telemetry(telemetry)

    def _on_request(self, client: GmqttClient, request_id: str, payload: bytes) -> None:
        try:
            query = parse_attribute_request(request_id, payload)
        except SessionClosed as exc:
            self._violation(f"attribute request not answered, the server closes: {exc}")
            return
        if isinstance(query.body.get("sharedKeys"), list):
            self._violation(
                f"sharedKeys must be one comma-separated string, got {query.body['sharedKeys']!r}"
            )
        with self._cond:
            answer = query.answer({}, self._shared)
        if query.request_id >= 0:  # no answer to a negative id; "007" is answered on ".../7"
            topic = f"{RESPONSE_PREFIX}{query.request_id}"
            client.publish(topic, json.dumps(answer), qos=1, retain=False)
        with self._cond:
            self._requests.append(
                AttributeRequest(request_id, query.body, answer, time.monotonic())
            )
            self._note(f"attribute request {request_id}: {query.body!r} -> {json.dumps(answer)}")
            self._cond.notify_all()
