"""Server-side RPC (teg_ota.app.rpc): what each method replies and runs, and that nothing
runs for a request that is refused; Gateway.restart_controller over the port fakes; the
uptime value (teg_ota.app.uptime); the link's RPC topic rules (adapters/mqtt/payloads).

The broker round trip and the real engine are in tests/integration/test_e2e_rpc.py.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from teg_ota.adapters.mqtt.payloads import (
    DEVICE_SUBSCRIPTIONS,
    MAX_REMAINING_LENGTH,
    RPC_REQUEST_FILTER,
    rpc_request_id,
    rpc_response_payload,
    rpc_response_topic,
)
from teg_ota.app.container import build_gateway
from teg_ota.app.inbox import RpcInbox
from teg_ota.app.rpc import (
    METHODS,
    RESTART_MESSAGE,
    Job,
    RpcCall,
    RpcDispatcher,
    RpcRefused,
    parse_call,
)
from teg_ota.app.uptime import UPTIME_KEY, uptime_telemetry
from teg_ota.domain.core.ota_messages import MAX_PAYLOAD_BYTES
from teg_ota.domain.model.outcome import Outcome, UpdateResult
from teg_ota.ports.container_runtime import ControllerState
from teg_ota.ports.telemetry_sink import TelemetryError

from .test_container import SETTINGS, Fakes
from .test_update_service import C1, tag

COMMIT = "0123456789ABCDEF0123456789abcdef01234567"


def request(method: object = None, params: object = None, **extra: object) -> bytes:
    body: dict[str, object] = dict(extra)
    if method is not None:
        body["method"] = method
    if params is not None:
        body["params"] = params
    return json.dumps(body).encode()


# --------------------------------------------------------------------------- fakes


@dataclass
class FakeStatus:
    values: dict[str, object]

    def to_dict(self) -> dict[str, object]:
        return dict(self.values)


@dataclass
class FakeGateway:
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    status_values: dict[str, object] = field(default_factory=lambda: {"running": True})
    fail: Exception | None = None
    cancels: list[str] = field(default_factory=list)

    def _call(self, *call: Any) -> UpdateResult:
        self.calls.append(call)
        if self.fail is not None:
            raise self.fail
        return UpdateResult(Outcome.UPDATED, "v1.1", "v1.1")

    def status(self) -> FakeStatus:
        if self.fail is not None:
            raise self.fail
        return FakeStatus(self.status_values)

    def restart_controller(self) -> UpdateResult:
        return self._call("restart_controller")

    def rollback(self) -> UpdateResult:
        return self._call("rollback")

    def update(self, version: str, *, force: bool = False) -> UpdateResult:
        return self._call("update", version, force)

    def force_swap(self, version: str) -> None:
        self.calls.append(("force_swap", version))

    def cancel_waiting_swap(self, why: str) -> None:
        self.cancels.append(why)


@dataclass
class FakeReplies:
    replies: list[tuple[int, Mapping[str, object]]] = field(default_factory=list)
    refuse_large: int | None = None

    def publish_rpc_response(self, request_id: int, body: object) -> None:
        assert isinstance(body, Mapping)
        if self.refuse_large is not None and len(json.dumps(body)) > self.refuse_large:
            raise TelemetryError("too large")
        self.replies.append((request_id, body))


class Rig:
    """A dispatcher whose exclusive jobs wait in a list (the worker is busy) and whose
    aside jobs run inline."""

    def __init__(self, *, stopping: bool = False) -> None:
        self.gateway = FakeGateway()
        self.replies = FakeReplies()
        self.queued: list[Job] = []
        self.aside: list[Job] = []
        self.stopping = stopping
        self.dispatch = RpcDispatcher(
            self.gateway,
            self.replies,
            run_exclusive=self._exclusive,
            run_aside=self._run_aside,
        )

    def _exclusive(self, job: Job) -> bool:
        if self.stopping:
            return False
        self.queued.append(job)
        return True

    def _run_aside(self, job: Job) -> bool:
        if self.stopping:
            return False
        self.aside.append(job)
        job()
        return True

    def run_queued(self) -> None:
        while self.queued:
            self.queued.pop(0)()

    def reply(self) -> Mapping[str, object]:
        assert len(self.replies.replies) == 1, self.replies.replies
        return self.replies.replies[0][1]


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("method", ["ota_status", "restart_controller", "rollback"])
@pytest.mark.parametrize("params", [None, {}, "absent"])
def test_methods_without_params_accept_none_null_and_an_empty_object(
    method: str, params: object
) -> None:
    body: dict[str, object] = {"method": method}
    if params != "absent":
        body["params"] = params
    assert parse_call(json.dumps(body).encode()) == RpcCall(method)


@pytest.mark.parametrize("method", ["ota_status", "restart_controller", "rollback"])
@pytest.mark.parametrize("params", [[], "", 0, False, {"force": True}, "{}"])
def test_methods_without_params_refuse_any_params(method: str, params: object) -> None:
    with pytest.raises(RpcRefused, match="takes no params"):
        parse_call(request(method, params))


def test_update_takes_a_version_and_an_optional_force() -> None:
    assert parse_call(request("update", {"version": "v1.1"})) == RpcCall("update", "v1.1")
    assert parse_call(request("update", {"version": "v1.1", "force": True})) == RpcCall(
        "update", "v1.1", True
    )
    # A commit hash is normalised as everywhere else.
    assert parse_call(request("update", {"version": COMMIT})).version == COMMIT.lower()


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        (None, "update needs params"),
        ([], "update needs params"),
        ("v1.1", "update needs params"),
        ({}, '"version" is missing'),
        ({"force": True}, '"version" is missing'),
        ({"version": "v1.1", "forced": True}, "unknown params 'forced'"),
        ({"version": 11}, "version must be a string"),
        ({"version": ""}, "version is empty"),
        ({"version": "v1..1"}, "invalid version"),
        ({"version": "-rf"}, "invalid version"),
        ({"version": "v1.1\nforged log line"}, "invalid version"),
        ({"version": "abc123"}, None),  # a short hash is a tag name here: git refuses it later
        ({"version": "v1.1", "force": "yes"}, '"force" must be true or false'),
        ({"version": "v1.1", "force": 1}, '"force" must be true or false'),
        ({"version": "v1.1", "force": None}, '"force" must be true or false'),
    ],
)
def test_update_params_are_validated_strictly(params: object, reason: str | None) -> None:
    body = {"method": "update"} if params is None else {"method": "update", "params": params}
    if reason is None:
        parse_call(json.dumps(body).encode())
        return
    with pytest.raises(RpcRefused, match=reason.replace("(", r"\(")) as refused:
        parse_call(json.dumps(body).encode())
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "not JSON"),
        (b"not json", "not JSON"),
        (b"{", "not JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[]", "not a JSON object"),
        (b"null", "not a JSON object"),
        (b'"restart_controller"', "not a JSON object"),
        (b"{}", '"method" must be a string'),
        (b'{"method": 1}', '"method" must be a string'),
        (b'{"method": null}', '"method" must be a string'),
        (b'{"method": "reboot"}', "unknown method 'reboot'; known: " + ", ".join(METHODS)),
        (b'{"method": "Restart_Controller"}', "unknown method"),
        (b"[" * 100_000 + b"]" * 100_000, "exceeds"),
        (b"[" * 30_000 + b"]" * 30_000, "not"),  # deep nesting: RecursionError or not an object
    ],
)
def test_unreadable_requests_are_refused(payload: bytes, reason: str) -> None:
    with pytest.raises(RpcRefused, match=reason):
        parse_call(payload)


def test_an_oversized_request_is_refused_before_it_is_read() -> None:
    payload = request("ota_status", None, padding="x" * MAX_PAYLOAD_BYTES)
    with pytest.raises(RpcRefused, match=f"exceeds {MAX_PAYLOAD_BYTES}"):
        parse_call(payload)


def test_an_unknown_method_is_shown_short_and_printable() -> None:
    with pytest.raises(RpcRefused) as refused:
        parse_call(request("x" * 500 + "\n\x1b[31m"))
    text = str(refused.value)
    assert len(text) < 200 and "\n" not in text and "\x1b" not in text


# --------------------------------------------------------------------------- dispatch


def test_restart_controller_replies_as_the_original_then_restarts() -> None:
    rig = Rig()
    rig.dispatch(7, request("restart_controller", {}))

    assert rig.replies.replies == [(7, {"result": "accepted", "message": RESTART_MESSAGE})]
    assert rig.gateway.calls == [], "replied at once; the restart waits for the worker"
    rig.run_queued()
    assert rig.gateway.calls == [("restart_controller",)]


def test_ota_status_replies_the_status_object_without_the_worker() -> None:
    rig = Rig()
    rig.gateway.status_values = {"running": True, "version": "v1.0", "update": None}
    rig.dispatch(0, request("ota_status"))

    assert rig.replies.replies == [(0, {"running": True, "version": "v1.0", "update": None})]
    assert rig.queued == [] and len(rig.aside) == 1


def test_ota_status_that_fails_still_answers() -> None:
    rig = Rig()
    rig.gateway.fail = OSError("engine gone")
    rig.dispatch(3, request("ota_status"))
    assert "engine gone" in str(rig.reply()["error"])


def test_rollback_is_accepted_then_run_on_the_worker() -> None:
    rig = Rig()
    rig.dispatch(1, request("rollback"))
    assert rig.reply() == {"result": "accepted"}
    assert rig.gateway.calls == []
    rig.run_queued()
    assert rig.gateway.calls == [("rollback",)]


@pytest.mark.parametrize(("force", "expected"), [(None, False), (False, False), (True, True)])
def test_update_is_accepted_then_run_on_the_worker(force: bool | None, expected: bool) -> None:
    rig = Rig()
    params: dict[str, object] = {"version": "v1.1"}
    if force is not None:
        params["force"] = force
    rig.dispatch(2, request("update", params))
    assert rig.reply() == {"result": "accepted"}
    forced = [("force_swap", "v1.1")] if expected else []
    assert rig.gateway.calls == forced, "a forced swap waiting now ends at once"
    assert rig.gateway.cancels == [], "the runner cancels a wait once the job is queued"
    rig.run_queued()
    assert rig.gateway.calls == [*forced, ("update", "v1.1", expected)]


@pytest.mark.parametrize(
    "payload",
    [
        request("reboot"),
        request("update", {"version": "v1..1"}),
        request("update", {"version": "v1.1", "force": "true"}),
        request("restart_controller", {"now": True}),
        b"garbage",
        b"\x00" * (MAX_PAYLOAD_BYTES + 1),
    ],
)
def test_a_refused_request_gets_an_error_reply_and_nothing_runs(payload: bytes) -> None:
    rig = Rig()
    rig.dispatch(5, payload)
    assert set(rig.reply()) == {"error"}
    assert isinstance(rig.reply()["error"], str)
    assert rig.queued == [] and rig.aside == [] and rig.gateway.calls == []


@pytest.mark.parametrize("method", ["restart_controller", "rollback", "ota_status"])
def test_while_stopping_nothing_is_accepted(method: str) -> None:
    rig = Rig(stopping=True)
    rig.dispatch(9, request(method))
    assert "stopping" in str(rig.reply()["error"])
    assert rig.gateway.calls == []


def test_an_operation_that_raises_is_logged_not_raised() -> None:
    rig = Rig()
    rig.gateway.fail = RuntimeError("bug")
    rig.dispatch(4, request("rollback"))
    rig.run_queued()  # does not raise
    assert rig.gateway.calls == [("rollback",)]


def test_a_reply_too_large_to_send_becomes_an_error_reply() -> None:
    rig = Rig()
    rig.replies.refuse_large = 1000
    rig.gateway.status_values = {"failed_error": "x" * 5000}
    rig.dispatch(6, request("ota_status"))
    assert rig.replies.replies == [(6, {"error": "reply cannot be sent: too large"})]


def test_the_rpc_inbox_drops_requests_until_a_handler_is_attached() -> None:
    inbox = RpcInbox()
    inbox(1, b"{}")  # nobody there: dropped
    seen: list[tuple[int, bytes]] = []
    inbox.attach(lambda request_id, payload: seen.append((request_id, payload)))
    inbox(2, b"{}")
    inbox.attach(None)
    inbox(3, b"{}")
    assert seen == [(2, b"{}")]


# ------------------------------------------------------------- Gateway.restart_controller


def test_restart_controller_starts_the_same_version_again_at_once() -> None:
    fakes = Fakes()
    gateway = build_gateway(SETTINGS, **fakes.overrides())
    gateway.ensure_running()
    gateway.watchdog_tick()
    first = fakes.runtime.controller_state()
    fakes.clock.advance(5)
    fakes.runtime.calls.clear()
    fakes.clock.slept.clear()

    result = gateway.restart_controller()

    assert result.outcome is Outcome.UPDATED and result.running_version == "v1.0"
    assert fakes.runtime.calls[:2] == ["stop", f"run {tag('v1.0')}"]
    second = fakes.runtime.controller_state()
    assert second.running and second.version == "v1.0" and second.commit == C1
    assert second.started_at_ms is not None and first.started_at_ms is not None
    assert second.started_at_ms > first.started_at_ms
    assert fakes.clock.slept == [], "no backoff wait"
    # The watchdog never saw it down: no crash counted, nothing to restart.
    assert gateway.watchdog_tick() is False
    assert gateway.watchdog.backoff.failures == 0
    assert "CRASH_LOOP" not in str(fakes.telemetry.values)


def test_restart_controller_starts_a_stopped_controller_without_waiting_for_the_backoff() -> None:
    fakes = Fakes()
    gateway = build_gateway(SETTINGS, **fakes.overrides())
    gateway.ensure_running()
    fakes.runtime.kill()
    gateway.watchdog_tick()  # restarts it (first failure)
    fakes.runtime.kill()
    gateway.watchdog_tick()  # down again: the backoff now makes it wait
    assert not fakes.runtime.controller_state().running
    assert gateway.watchdog.seconds_until_restart() > 0

    assert gateway.restart_controller().outcome is Outcome.UPDATED
    assert fakes.runtime.controller_state().running


def test_restart_controller_without_any_version_does_nothing() -> None:
    fakes = Fakes()
    fakes.store = type(fakes.store)(default=None)
    gateway = build_gateway(SETTINGS, **fakes.overrides())
    result = gateway.restart_controller()
    assert result.outcome is Outcome.FAILED and "no controller version" in str(result.error)
    assert fakes.runtime.calls == []


def test_restart_controller_waits_for_the_operation_that_runs() -> None:
    fakes = Fakes()
    gateway = build_gateway(SETTINGS, **fakes.overrides())
    gateway.ensure_running()
    release = threading.Event()
    order: list[str] = []
    gateway.exclusive.submit(lambda: (release.wait(5), order.append("update")))
    restarted = gateway.exclusive.submit(
        lambda: (gateway.restart_controller(), order.append("restart"))
    )
    assert not restarted.done()
    release.set()
    restarted.result(5)
    assert order == ["update", "restart"]


# --------------------------------------------------------------------------- uptime


def test_uptime_is_the_time_since_the_container_started() -> None:
    state = ControllerState(exists=True, running=True, started_at_ms=1_700_000_000_000)
    assert uptime_telemetry(state, 1_700_000_012.3456) == {UPTIME_KEY: 12_346}
    assert UPTIME_KEY == "ms_since_controller_startup"


@pytest.mark.parametrize(
    "state",
    [
        ControllerState(exists=False),
        ControllerState(exists=True, running=False, started_at_ms=1_700_000_000_000),
        ControllerState(exists=True, running=True, started_at_ms=None),
    ],
)
def test_no_uptime_without_a_running_controller(state: ControllerState) -> None:
    assert uptime_telemetry(state, 1_700_000_012.0) is None


def test_uptime_never_goes_negative_when_the_clock_steps_back() -> None:
    state = ControllerState(exists=True, running=True, started_at_ms=1_700_000_000_000)
    assert uptime_telemetry(state, 1_699_999_000.0) == {UPTIME_KEY: 0}


# --------------------------------------------------------------------------- topics


def test_the_link_subscribes_to_rpc_requests() -> None:
    assert RPC_REQUEST_FILTER == "v1/devices/me/rpc/request/+"
    assert RPC_REQUEST_FILTER in DEVICE_SUBSCRIPTIONS
    assert rpc_response_topic(0) == "v1/devices/me/rpc/response/0"


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("v1/devices/me/rpc/request/0", 0),
        ("v1/devices/me/rpc/request/17", 17),
        ("v1/devices/me/rpc/request/007", 7),
        ("v1/devices/me/rpc/request/2147483647", 2**31 - 1),
        ("v1/devices/me/rpc/request/2147483648", None),
        ("v1/devices/me/rpc/request/99999999999999999999", None),
        ("v1/devices/me/rpc/request/", None),
        ("v1/devices/me/rpc/request/-1", None),
        ("v1/devices/me/rpc/request/+1", None),
        ("v1/devices/me/rpc/request/1.5", None),
        ("v1/devices/me/rpc/request/abc", None),
        ("v1/devices/me/rpc/request/\u0663", None),  # a non-ASCII digit
        ("v1/devices/me/rpc/request/1/2", None),
        ("v1/devices/me/rpc/response/1", None),
        ("v1/devices/me/attributes/response/1", None),
    ],
)
def test_rpc_request_ids_are_decimal_java_ints(topic: str, expected: int | None) -> None:
    assert rpc_request_id(topic) == expected


def test_rpc_replies_are_compact_json_that_fits() -> None:
    topic = rpc_response_topic(3)
    assert rpc_response_payload(topic, {"result": "accepted"}) == b'{"result":"accepted"}'
    assert rpc_response_payload(topic, {"e": "é"}) == '{"e":"é"}'.encode()
    with pytest.raises(TelemetryError, match="not JSON"):
        rpc_response_payload(topic, {"x": float("nan")})
    with pytest.raises(TelemetryError, match="not JSON"):
        rpc_response_payload(topic, {"x": object()})
    with pytest.raises(TelemetryError, match="exceeds"):
        rpc_response_payload(topic, {"x": "y" * MAX_REMAINING_LENGTH})
