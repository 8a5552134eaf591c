"""Server-side RPC from ThingsBoard: the methods, their strict validation, their replies.

The MQTT link hands every request with a valid id to :class:`RpcDispatcher` as
``(request_id, payload)``, on the link's thread. The dispatcher reads and validates it there
(pure and quick), answers what it refuses, and hands what it accepts to the runner, which
runs it off the link's thread and off the asyncio loop. Replies go out live, never through
the outbox (``publish_rpc_response``): ThingsBoard waits for one only until its RPC timeout
(10 s by default).

* ``restart_controller`` (no params): ``{"result": "accepted", "message": "OK - Restarting
  Controller"}`` at once (the original's text, in its ``message`` key), then the controller is
  stopped and the same version started again, no backoff wait (Gateway.restart_controller);
* ``ota_status`` (no params): the object ``teg-ota status --json`` prints;
* ``rollback`` (no params): ``{"result": "accepted"}``, then what ``teg-ota rollback`` does;
* ``update`` (params ``{"version": "<tag or 40-hex commit>", "force": false}``, ``force``
  optional): ``{"result": "accepted"}``, then what ``teg-ota update [--force]`` does.

"No params" is an absent ``params``, ``null`` or ``{}`` (what ThingsBoard's widgets send).
Anything else (an unknown method, a parameter that is missing, extra, or of the wrong type,
an invalid version, a payload that is not a JSON object or is over 64 KiB) gets
``{"error": "..."}`` and nothing runs. Accepted long operations report through ``sw_state``
as an assignment does (rollback, restart: through ``current_sw_*``), not through the reply.

While another operation runs, an accepted ``restart_controller``, ``rollback`` or ``update``
waits for it (the one Exclusive runs them one at a time, in order) and then runs; an
assignment from ThingsBoard waiting in the mailbox runs after it. ``ota_status`` does not
wait: it only reads, as ``teg-ota status`` does next to a running update.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from loguru import logger

from teg_ota.domain.core.ota_messages import MAX_PAYLOAD_BYTES
from teg_ota.domain.model.errors import InvalidVersion, TelemetryError
from teg_ota.domain.model.outcome import UpdateResult
from teg_ota.domain.model.versions import parse_version

RESTART_MESSAGE = "OK - Restarting Controller"
"""The original gateway's reply text (it answers ``{"message": ...}``)."""
ACCEPTED: Mapping[str, str] = {"result": "accepted"}
METHODS = ("ota_status", "restart_controller", "rollback", "update")
_UPDATE_PARAMS = frozenset({"version", "force"})
_SHOWN_LENGTH = 64

Job = Callable[[], object]


class RpcStatus(Protocol):
    def to_dict(self) -> dict[str, object]: ...


class RpcGateway(Protocol):
    """What the RPC methods need of :class:`teg_ota.app.gateway.Gateway`."""

    def status(self) -> RpcStatus: ...

    def restart_controller(self) -> UpdateResult: ...

    def rollback(self) -> UpdateResult: ...

    def update(self, version: str, *, force: bool = ...) -> UpdateResult: ...

    def force_swap(self, version: str) -> None: ...


class RpcReplies(Protocol):
    """The link's reply side (:meth:`GmqttLink.publish_rpc_response`)."""

    def publish_rpc_response(self, request_id: int, body: object) -> None: ...


class RpcRefused(ValueError):
    """A request that is not run; its text is the error reply."""


@dataclass(frozen=True, slots=True)
class RpcCall:
    method: str
    version: str | None = None
    force: bool = False


def _shown(value: object) -> str:
    """Untrusted input, short and printable, for an error reply or a log line."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    printable = "".join(ch if ch.isprintable() and ch.isascii() else "?" for ch in text)
    if len(printable) > _SHOWN_LENGTH:
        printable = printable[:_SHOWN_LENGTH] + "..."
    return repr(printable)


def parse_call(payload: bytes) -> RpcCall:
    """The request ``{"method": ..., "params": ...}``, validated; else :class:`RpcRefused`."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise RpcRefused(f"request of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        body = json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise RpcRefused("request is not UTF-8") from exc
    except (ValueError, RecursionError) as exc:
        raise RpcRefused("request is not JSON") from exc
    if not isinstance(body, dict):
        raise RpcRefused("request is not a JSON object")
    method = body.get("method")
    if not isinstance(method, str):
        raise RpcRefused('"method" must be a string')
    if method not in METHODS:
        raise RpcRefused(f"unknown method {_shown(method)}; known: {', '.join(METHODS)}")
    params = body.get("params")
    if method != "update":
        if params not in (None, {}):
            raise RpcRefused(f"{method} takes no params, got {_shown(params)}")
        return RpcCall(method)
    return _update_call(params)


def _update_call(params: object) -> RpcCall:
    if not isinstance(params, dict):
        raise RpcRefused('update needs params {"version": "<tag or commit>", "force": false}')
    if extra := sorted(set(params) - _UPDATE_PARAMS):
        raise RpcRefused(f"update: unknown params {', '.join(_shown(k) for k in extra)}")
    if "version" not in params:
        raise RpcRefused('update: "version" is missing')
    try:
        version = parse_version(params["version"]).value
    except InvalidVersion as exc:
        raise RpcRefused(f"update: {exc}") from exc
    force = params.get("force", False)
    if not isinstance(force, bool):
        raise RpcRefused(f'update: "force" must be true or false, got {_shown(force)}')
    return RpcCall("update", version, force)


class RpcDispatcher:
    """Reads, validates and dispatches RPC requests (see the module docstring).

    ``run_exclusive(job)`` queues a job on the Exclusive's worker and ``run_aside(job)``
    runs one on another thread (not the worker); both return at once, False when the job
    was refused (the runner is stopping). Jobs never raise: they log what went wrong.
    """

    def __init__(
        self,
        gateway: RpcGateway,
        replies: RpcReplies,
        *,
        run_exclusive: Callable[[Job], bool],
        run_aside: Callable[[Job], bool],
    ) -> None:
        self._gateway = gateway
        self._replies = replies
        self._run_exclusive = run_exclusive
        self._run_aside = run_aside

    def __call__(self, request_id: int, payload: bytes) -> None:
        """One request (on the link's thread: returns at once)."""
        try:
            call = parse_call(payload)
        except RpcRefused as exc:
            logger.warning("RPC request {} refused: {}", request_id, exc)
            self._reply(request_id, {"error": str(exc)})
            return
        logger.info("RPC request {}: {} {}", request_id, call.method, call.version or "")
        if call.method == "ota_status":
            accepted = self._run_aside(lambda: self._status(request_id))
            if not accepted:
                self._reply(request_id, {"error": "the gateway is stopping"})
            return
        job, reply = self._operation(request_id, call)
        if call.force and call.version:
            # A swap to it waiting for the controller's lock or a window ends now: the
            # queued job would only run after that wait.
            self._gateway.force_swap(call.version)
        if self._run_exclusive(job):
            self._reply(request_id, reply)
        else:
            self._reply(request_id, {"error": "the gateway is stopping; nothing was done"})

    def _operation(self, request_id: int, call: RpcCall) -> tuple[Job, Mapping[str, object]]:
        gateway = self._gateway
        if call.method == "restart_controller":
            run: Callable[[], UpdateResult] = gateway.restart_controller
            reply: Mapping[str, object] = {**ACCEPTED, "message": RESTART_MESSAGE}
        elif call.method == "rollback":
            run, reply = gateway.rollback, ACCEPTED
        else:
            version, force = call.version or "", call.force
            run, reply = (lambda: gateway.update(version, force=force)), ACCEPTED
        return (lambda: self._logged(request_id, call.method, run)), reply

    @staticmethod
    def _logged(request_id: int, method: str, run: Callable[[], UpdateResult]) -> None:
        try:
            result = run()
        except Exception:  # noqa: BLE001 - the worker must outlive any single request
            logger.exception("RPC request {} ({}) failed", request_id, method)
            return
        outcome = result.outcome.value
        if result.error:
            logger.warning("RPC request {} ({}): {}: {}", request_id, method, outcome, result.error)
        else:
            running = result.running_version
            logger.info("RPC request {} ({}): {}, {} runs", request_id, method, outcome, running)

    def _status(self, request_id: int) -> None:
        try:
            body: Mapping[str, object] = self._gateway.status().to_dict()
        except Exception as exc:  # noqa: BLE001 - answer rather than leave ThingsBoard waiting
            logger.exception("RPC request {} (ota_status) failed", request_id)
            body = {"error": f"status failed: {type(exc).__name__}: {exc}"}
        self._reply(request_id, body)

    def _reply(self, request_id: int, body: Mapping[str, object]) -> None:
        try:
            self._replies.publish_rpc_response(request_id, body)
        except TelemetryError as exc:
            logger.error("RPC request {}: reply cannot be sent: {}", request_id, exc)
            if "error" not in body:
                self._reply(request_id, {"error": f"reply cannot be sent: {exc}"})
