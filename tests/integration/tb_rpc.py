"""Server-side RPC for tb_standin.ThingsBoardStandIn: ThingsBoard's side of a two-way call.

No pytest imports. :class:`RpcSide` is a mixin of the stand-in (before DeviceSide in its
bases). As the real server does (``DeviceActorMessageProcessor``, ``JsonMqttAdaptor``):

* the request goes to ``v1/devices/me/rpc/request/{id}`` as ``{"method": ..., "params":
  ...}``, the ids numbered per device from 0 (``rpcSeq++``);
* the device answers on ``v1/devices/me/rpc/response/{id}``; the body is taken as it is
  (the REST API returns it as JSON when it parses as JSON, else as text);
* no answer within the timeout (10 s by default, ``DEFAULT_TIMEOUT``) is a timeout for the
  caller (:class:`RpcTimeout`; the REST API answers 504); an answer after it is ignored;
* an answer on an id that ``Integer.parseInt`` refuses closes the session (the gate does
  that; tb_device_api.check_publish).

Every call and answer is in :meth:`timeline`; :attr:`rpc_calls` keeps them.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from gmqtt import Client as GmqttClient
from tb_device_api import RPC_REQUEST_PREFIX, RPC_RESPONSE_PREFIX

DEFAULT_TIMEOUT = 10.0
"""ThingsBoard's default two-way RPC timeout (``timeout`` of the REST call: 10000 ms)."""


class RpcTimeout(TimeoutError):
    """The device did not answer within the timeout (ThingsBoard: 504 Gateway Timeout)."""


@dataclass(frozen=True)
class RpcCall:
    request_id: int
    request: bytes
    reply: Any = None
    """The answer as JSON (or text when it is not JSON); None while unanswered."""
    raw_reply: bytes | None = None
    replied_after: float | None = None
    """Seconds from the request to the answer."""


class RpcSide:
    """Mixin: needs ``_cond``, ``_note`` and ``_publish_blocking`` of the stand-in."""

    _cond: threading.Condition
    _note: Callable[[str], None]  # DeviceSide's
    _publish_blocking: Callable[..., None]  # ThreadedMqttClient's
    _rpc_ids: Iterator[int]
    _rpc_sent: dict[int, float]
    _rpc_answers: dict[int, bytes]
    _rpc_calls: list[RpcCall]
    _rpc_late: list[int]

    def _init_rpc(self) -> None:
        self._rpc_ids = itertools.count(0)
        self._rpc_sent = {}
        self._rpc_answers = {}
        self._rpc_calls = []
        self._rpc_late = []

    # -- the server side ----------------------------------------------------------------------
    def rpc(self, method: str, params: Any = None, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """A two-way RPC: ``{"method", "params"}`` (``params`` None: ``{}``, what the
        widgets and the REST examples send) to the device; its answer, parsed."""
        body = {"method": method, "params": {} if params is None else params}
        return self.rpc_raw(json.dumps(body), timeout)

    def rpc_raw(self, payload: bytes | str, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """Send ``payload`` as it is as the next request; the answer (see :meth:`rpc`).
        Not from the stand-in's own thread (it waits for the answer)."""
        data = payload.encode() if isinstance(payload, str) else payload
        with self._cond:
            request_id = next(self._rpc_ids)
            self._rpc_sent[request_id] = time.monotonic()
            self._note(f"RPC request {request_id}: {data[:200]!r}")
        self._publish_blocking(f"{RPC_REQUEST_PREFIX}{request_id}", data, qos=1)
        with self._cond:
            answered = self._cond.wait_for(lambda: request_id in self._rpc_answers, timeout)
            sent = self._rpc_sent.pop(request_id)
            if not answered:
                self._note(f"RPC request {request_id}: no answer within {timeout}s")
                self._rpc_calls.append(RpcCall(request_id, data))
                raise RpcTimeout(f"RPC request {request_id}: no answer within {timeout}s")
            raw = self._rpc_answers.pop(request_id)
            call = RpcCall(request_id, data, _parsed(raw), raw, time.monotonic() - sent)
            self._rpc_calls.append(call)
        return call.reply

    @property
    def rpc_calls(self) -> list[RpcCall]:
        with self._cond:
            return list(self._rpc_calls)

    @property
    def late_rpc_answers(self) -> list[int]:
        """Ids answered after their timeout, or never asked (ignored, as the server does)."""
        with self._cond:
            return list(self._rpc_late)

    # -- ThreadedMqttClient hooks (loop thread) ---------------------------------------------
    def _subscriptions(self) -> Sequence[str]:
        return (*super()._subscriptions(), RPC_RESPONSE_PREFIX + "+")

    def _handle_message(
        self, client: GmqttClient, topic: str, payload: bytes, properties: Any
    ) -> None:
        super()._handle_message(client, topic, payload, properties)
        if topic.startswith(RPC_RESPONSE_PREFIX):
            self._on_rpc_answer(topic[len(RPC_RESPONSE_PREFIX) :], payload)

    def _on_rpc_answer(self, request_id: str, payload: bytes) -> None:
        with self._cond:
            self._note(f"RPC answer {request_id}: {payload[:300]!r}")
            rid = int(request_id) if request_id.isascii() and request_id.isdigit() else None
            if rid is None or rid not in self._rpc_sent:
                self._rpc_late.append(-1 if rid is None else rid)
                return
            self._rpc_answers[rid] = payload
            self._cond.notify_all()


def _parsed(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")
