"""ThingsBoard's time series as a device sees them: parsing, type cast and the latest-value rule.

No pytest imports (scripts/demo.py imports the stand-in). The rules, from
/work/shared/reference/thingsboard-ota.md ("What the server does around an assignment") and
ThingsBoard's ``JsonConverter`` / ``JsonMqttAdaptor``:

* flat telemetry ``{"k": v}`` is stamped with the server's clock on arrival;
  ``{"ts": ms, "values": {...}}`` keeps the device's ts; a list holds several of those;
* anything else (not JSON, not an object, ``values`` not an object, a ``ts`` that is not a
  number) is a validation error, after which the real server closes the session;
* type cast (``transport.json.type_cast_enabled=true``): a string that commons-lang's
  ``NumberUtils.isParsable`` accepts (``-?digits[.digits]`` or ``.digits``; no exponent, no
  ``+``, no trailing dot) is stored as a number: ``"1.10"`` -> 1.1, ``"2"`` -> 2, while
  ``"1.2.3"``, ``"1e3"`` and ``"v1.0"`` stay strings; JSON numbers with a ``.`` are doubles,
  without one longs; a long out of range or more than 16 decimals is kept as a string;
  ``null`` values are dropped; objects and arrays are JSON values;
* the latest value of a key is replaced only by a value whose ts is not older
  (``sql.ts_latest.update_by_latest_ts=true``): an equal ts replaces, an older one does not.
  Every point is kept in the history anyway (the real server stores them all too).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
_PARSABLE = re.compile(r"-?(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)")


class TelemetryError(ValueError):
    """A telemetry payload ThingsBoard refuses (it then closes the session)."""


class RawNumber(str):
    """A JSON number as written, so the cast can tell ``1.0`` from ``1`` as Gson does."""

    __slots__ = ()


def decode_json(payload: bytes | str) -> Any:
    """JSON with every number kept as a :class:`RawNumber`; :class:`TelemetryError` if not JSON."""
    text = payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else payload
    try:
        return json.loads(text, parse_float=RawNumber, parse_int=RawNumber)
    except (ValueError, RecursionError) as exc:
        raise TelemetryError(f"not JSON: {text[:80]!r}") from exc


def loads_json(payload: bytes | str) -> Any:
    """JSON as Gson reads it (an empty payload is JSON null); :class:`TelemetryError` if not."""
    if not payload.strip():
        return None
    return plain(decode_json(payload))


def plain(value: Any) -> Any:
    """Nested RawNumbers back to int/float (for JSON values and requests)."""
    if isinstance(value, RawNumber):
        return float(value) if any(c in value for c in ".eE") else int(value)
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def _number(text: str) -> int | float | str:
    """ThingsBoard's ``buildNumericKeyValueProto`` on the text of a number."""
    try:
        bd = Decimal(text)
    except InvalidOperation:
        return text
    simple_double = "." in text and "e" not in text.lower()
    exponent = bd.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent >= 0 and not simple_double:
        value = int(bd)
        return value if LONG_MIN <= value <= LONG_MAX else format(bd, "f")
    scale = -bd.as_tuple().exponent if isinstance(bd.as_tuple().exponent, int) else 0
    return float(bd) if scale <= 16 else format(bd, "f")


def cast_value(value: Any) -> Any:
    """One telemetry value as ThingsBoard stores it (``None``: the key is dropped)."""
    if isinstance(value, RawNumber):
        return _number(value)
    if isinstance(value, str):
        return _number(value) if _PARSABLE.fullmatch(value) else value
    if isinstance(value, bool) or value is None:
        return value
    return plain(value)  # an object or an array: a JSON value


def cast_values(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: c for k, v in values.items() if (c := cast_value(v)) is not None}


@dataclass(frozen=True)
class Entry:
    """One parsed telemetry item: ``raw`` as sent (numbers as int/float), ``values`` cast."""

    device_ts: int | None
    raw: dict[str, Any]
    values: dict[str, Any]


def _ts(value: Any) -> int:
    """Gson's ``getAsLong`` on ``ts``: a number (truncated) or a decimal string."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise TelemetryError(f"ts is not a number: {value!r}")
    try:
        return int(Decimal(value)) if isinstance(value, RawNumber) else int(value)
    except (ValueError, InvalidOperation) as exc:
        raise TelemetryError(f"ts is not a number: {value!r}") from exc


def parse_telemetry(payload: bytes | str) -> list[Entry]:
    """The items of one telemetry publish, or :class:`TelemetryError`."""
    data = None if not payload.strip() else decode_json(payload)
    items = data if isinstance(data, list) else [data]
    entries: list[Entry] = []
    for item in items:
        if not isinstance(item, dict):
            raise TelemetryError(f"can't parse value: {json.dumps(plain(item))[:80]}")
        if "ts" in item and "values" in item:
            values = item["values"]
            if not isinstance(values, dict):
                raise TelemetryError(f"values is not an object: {plain(values)!r}")
            entries.append(Entry(_ts(item["ts"]), plain(values), cast_values(values)))
        else:
            entries.append(Entry(None, plain(item), cast_values(item)))
    return entries


@dataclass(frozen=True)
class Point:
    """One stored point of one key."""

    key: str
    ts: int
    value: Any
    source: str
    """``"device"`` or ``"server"`` (what the server itself wrote: QUEUED, target_sw_*...)."""
    index: int
    """Arrival order among all points."""


class TimeSeries:
    """Latest values (by the ts rule) and the full history of one device. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._latest: dict[str, Point] = {}
        self._history: list[Point] = []

    def save(self, ts: int, values: Mapping[str, Any], source: str) -> list[str]:
        """Store ``values`` at ``ts``; the keys whose latest value this replaced."""
        replaced: list[str] = []
        with self._lock:
            for key, value in values.items():
                point = Point(key, ts, value, source, len(self._history))
                self._history.append(point)
                current = self._latest.get(key)
                if current is None or ts >= current.ts:
                    self._latest[key] = point
                    replaced.append(key)
        return replaced

    def latest(self, key: str) -> Point | None:
        with self._lock:
            return self._latest.get(key)

    def value(self, key: str, default: Any = None) -> Any:
        point = self.latest(key)
        return default if point is None else point.value

    def latest_values(self) -> dict[str, Any]:
        with self._lock:
            return {key: point.value for key, point in self._latest.items()}

    def history(self, key: str | None = None) -> list[Point]:
        with self._lock:
            return [p for p in self._history if key is None or p.key == key]

    def keys(self) -> Iterable[str]:
        with self._lock:
            return list(self._latest)
