"""ThingsBoard device provisioning over MQTT: a new gateway asks for its own credentials.

What ThingsBoard does, read from its source (``MqttTransportHandler``, ``JsonConverter``,
``DeviceProvisionServiceImpl``) and its docs (reference/mqtt-api/provisioning):

* A CONNECT with the user name ``provision`` (or the client id ``provision``), no password, is
  accepted at once (CONNACK 0) as a "provision only" session: the one publish it takes is on
  ``/provision/request`` (another topic: PUBACK "topic name invalid" and the session is
  closed), the one subscription ``/provision/response``. The server closes the session 60 s
  after its answer; we disconnect as soon as we have it.
* The request and the answers (SUCCESS with the credentials; the refusals NOT_FOUND and
  FAILURE, and when ThingsBoard gives each) are described in
  :mod:`~teg_ota.adapters.mqtt.provision_messages`.

Here: with a provision key and secret and no credentials configured, the link (link.py)
awaits :class:`Provisioner` before its first connection: the credentials file
``<data>/tb_credentials.json`` when it holds valid credentials, else a provisioning session
as above. The credentials received are stored (``write_atomic``: fsync, rename, mode 0600)
and used for every connection from then on; a restart reads them back and never provisions
again. The link's connect loop is the place because it is the one place that connects to
ThingsBoard: it runs on the link's own thread, so the runner starts the controller and runs
the watchdog meanwhile (telemetry waits in the durable outbox), and ``stop()`` interrupts
provisioning like any connection attempt; the runner and the rest of the link are untouched.

Retries: a refusal (NOT_FOUND, FAILURE, an answer without usable credentials, a refused
CONNECT) is ONE error line (a repeat of the same refusal is logged at debug only), and the
next request goes out after :data:`RETRY_INITIAL_S` (60 s), doubling up to
:data:`RETRY_MAX_S` (1 h): an operator's fix in ThingsBoard is picked up without a restart,
and a refusing server is never hammered. A broker that cannot be reached or does not answer
within :data:`PROVISION_TIMEOUT_S` is retried with the link's reconnect backoff
(``connect_backoff_initial_s`` doubling up to ``connect_backoff_max_s``). Every delay is
full jitter over its step (uniform in ``[0, step]``, domain/core/jitter.py; ``jitter=False``
in the settings: the step itself), so that a fleet refused at once does not retry at once.

Secrets: the provision key and secret and the credentials received never appear in a log
line, a ``repr`` or an error. A credentials file that cannot be used (not JSON, wrong
fields, unreadable) is logged with its path and the fix, moved aside to
``tb_credentials.json.corrupt`` (the token can still be read from it by hand), and the
device is provisioned again.

The parts: ``provision_messages`` (topics, request, answer, credentials),
``provision_session`` (one session), ``credentials_file`` (the file); here, :class:`Provisioner`
(stored or provisioned, and the retries) and the names they export, re-exported.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from loguru import logger

from teg_ota.adapters.mqtt.credentials_file import CredentialsFile
from teg_ota.adapters.mqtt.provision_messages import (
    CREDENTIALS_FILE_NAME,
    CREDENTIALS_MODE,
    PROVISION_REQUEST_TOPIC,
    PROVISION_RESPONSE_TOPIC,
    PROVISION_TIMEOUT_S,
    PROVISION_USERNAME,
    RETRY_INITIAL_S,
    RETRY_MAX_S,
    CorruptCredentials,
    DeviceCredentials,
    ProvisionError,
    ProvisionRefused,
    ProvisionRequest,
    parse_response,
)
from teg_ota.adapters.mqtt.provision_session import request_credentials
from teg_ota.adapters.mqtt.settings import MqttSettings
from teg_ota.domain.core.jitter import RandomSource, full_jitter

__all__ = [
    "CREDENTIALS_FILE_NAME",
    "CREDENTIALS_MODE",
    "PROVISION_REQUEST_TOPIC",
    "PROVISION_RESPONSE_TOPIC",
    "PROVISION_TIMEOUT_S",
    "PROVISION_USERNAME",
    "RETRY_INITIAL_S",
    "RETRY_MAX_S",
    "CorruptCredentials",
    "CredentialsFile",
    "DeviceCredentials",
    "ProvisionError",
    "ProvisionRefused",
    "ProvisionRequest",
    "Provisioner",
    "parse_response",
    "request_credentials",
]

_T = TypeVar("_T")

Requester = Callable[[MqttSettings, ProvisionRequest, float], Awaitable[DeviceCredentials]]


class Provisioner:
    """The device's credentials for the link: stored, or provisioned (module docstring).

    ``await provisioner(settings, stop)`` returns ``settings`` with the credentials, or
    ``None`` when ``stop`` was set first; it never raises. ``requester`` is
    :func:`request_credentials` (tests give another one); ``rng`` draws the jitter, ``sleep``
    waits it out (tests record it)."""

    def __init__(
        self,
        request: ProvisionRequest,
        store: CredentialsFile,
        *,
        retry_initial_s: float = RETRY_INITIAL_S,
        retry_max_s: float = RETRY_MAX_S,
        timeout_s: float = PROVISION_TIMEOUT_S,
        requester: Requester = request_credentials,
        rng: RandomSource | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if retry_initial_s <= 0 or retry_max_s < retry_initial_s:
            raise ValueError("provisioning retry delays: 0 < initial <= max")
        self._request = request
        self._store = store
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._timeout_s = timeout_s
        self._requester = requester
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 - not crypto
        self._sleep = sleep
        self.refused: str | None = None
        """Why ThingsBoard refused the last request (status and message), else None."""
        self.requests = 0
        """Provisioning sessions attempted since the provisioner was made."""

    def __repr__(self) -> str:
        return f"Provisioner({self._request!r}, {self._store.path})"

    @property
    def device_name(self) -> str:
        return self._request.device_name

    @property
    def store(self) -> CredentialsFile:
        return self._store

    async def __call__(self, settings: MqttSettings, stop: asyncio.Event) -> MqttSettings | None:
        stored = self._stored(settings)
        if stored is not None:
            return stored
        retry = self._retry_initial_s
        backoff = settings.connect_backoff_initial_s
        failures = 0
        while not stop.is_set():
            try:
                self.requests += 1
                logger.info(
                    "Provisioning device {!r} in ThingsBoard at {}:{}",
                    self.device_name,
                    settings.host,
                    settings.port,
                )
                attempt = self._requester(settings, self._request, self._timeout_s)
                done, credentials = await _unless_stopped(attempt, stop)
                if not done or credentials is None:
                    return None
                ready = credentials.apply(settings)
                self._keep(credentials, settings)
                if self.refused is not None:
                    logger.info("ThingsBoard provisions the device again")
                self.refused = None
                return ready
            except (ProvisionError, ValueError) as exc:  # ValueError: unusable credentials
                delay = self._jittered(retry, settings)
                refusal = exc if isinstance(exc, ProvisionError) else ProvisionError(str(exc))
                self._note_refusal(refusal, settings, delay)
                retry = min(retry * 2, self._retry_max_s)
            except (OSError, TimeoutError) as exc:
                delay = self._jittered(backoff, settings)
                backoff = min(backoff * 2, settings.connect_backoff_max_s)
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                message = "Cannot provision the device at {}:{} ({}); next attempt in {:.0f}s"
                log = logger.warning if failures % 10 == 0 else logger.debug
                log(message, settings.host, settings.port, reason, delay)
                failures += 1
            except Exception:  # noqa: BLE001 - a bug here must not end the link for good
                delay = self._jittered(retry, settings)
                logger.exception("Provisioning failed unexpectedly; next attempt in {:.0f}s", delay)
                retry = min(retry * 2, self._retry_max_s)
            await _unless_stopped(self._sleep(delay), stop)
        return None

    def _jittered(self, step_s: float, settings: MqttSettings) -> float:
        return full_jitter(step_s, self._rng) if settings.jitter else step_s

    # -- the stored credentials -------------------------------------------------------------------
    def _stored(self, settings: MqttSettings) -> MqttSettings | None:
        path = self._store.path
        try:
            loaded = self._store.load()
            if loaded is None:
                return None
            credentials, name = loaded
            ready = credentials.apply(settings)
        except (CorruptCredentials, ValueError) as exc:
            moved = self._store.move_aside()
            where = f"moved to {moved}" if moved is not None else "left in place"
            logger.error(
                "{} cannot be used ({}); {}. Provisioning device {!r} again. If ThingsBoard "
                "answers FAILURE (the device exists), copy the device's access token from "
                "ThingsBoard into TEG_MQTT_TOKEN_FILE, or delete the device there",
                path,
                exc,
                where,
                self.device_name,
            )
            return None
        if name is not None and name != self.device_name:
            logger.warning(
                "{} holds the credentials of device {!r}, not of {!r} (TEG_DEVICE_NAME): "
                "using them; delete the file to provision {!r}",
                path,
                name,
                self.device_name,
                self.device_name,
            )
        logger.info(
            "Using the provisioned credentials ({}) of device {!r} from {}",
            credentials.kind,
            name or self.device_name,
            path,
        )
        return ready

    def _keep(self, credentials: DeviceCredentials, settings: MqttSettings) -> None:
        host = f"{settings.host}:{settings.port}"
        try:
            self._store.save(credentials, self.device_name, host)
        except OSError as exc:
            logger.error(
                "Provisioned device {!r} ({}), but cannot store the credentials in {} ({}): "
                "they are used until teg-ota stops, and ThingsBoard will not provision the "
                "device again. Fix the data directory, then copy the device's access token "
                "from ThingsBoard into TEG_MQTT_TOKEN_FILE",
                self.device_name,
                credentials.kind,
                self._store.path,
                exc.strerror or type(exc).__name__,
            )
            return
        logger.info(
            "Provisioned device {!r} in ThingsBoard at {} ({}); credentials stored in {}",
            self.device_name,
            host,
            credentials.kind,
            self._store.path,
        )

    # -- refusals ---------------------------------------------------------------------------------
    def _note_refusal(self, exc: ProvisionError, settings: MqttSettings, delay: float) -> None:
        """ONE error line per distinct refusal; its repeats at debug."""
        reason = str(exc)
        if reason == self.refused:
            logger.debug("Provisioning still refused: {}; next attempt in {:.0f}s", reason, delay)
            return
        self.refused = reason
        logger.error(
            "ThingsBoard at {}:{} refused to provision device {!r}: {}; {}; next attempt in "
            "{:.0f}s",
            settings.host,
            settings.port,
            self.device_name,
            reason,
            _hint(exc, self.device_name),
            delay,
        )


def _hint(exc: ProvisionError, device_name: str) -> str:
    if isinstance(exc, ProvisionRefused) and exc.status == "NOT_FOUND":
        return (
            "no device profile has this provision key, or the secret does not match: check "
            "TEG_PROVISION_KEY and TEG_PROVISION_SECRET against the device profile's "
            "'Device provisioning' settings"
        )
    if isinstance(exc, ProvisionRefused) and exc.status == "FAILURE":
        return (
            f"a device named {device_name!r} exists already (a name is provisioned once), or "
            "the profile only accepts pre-provisioned devices and has none of that name: "
            "delete or create the device in ThingsBoard, set another TEG_DEVICE_NAME, or put "
            "the device's access token in TEG_MQTT_TOKEN_FILE"
        )
    return "check the provisioning settings of the device profile in ThingsBoard"


async def _unless_stopped(
    awaitable: Coroutine[Any, Any, _T] | Awaitable[_T], stop: asyncio.Event
) -> tuple[bool, _T | None]:
    """``(True, result)``, or ``(False, None)`` when ``stop`` was set first (then the
    awaitable is cancelled). Raises what the awaitable raises."""
    task = asyncio.ensure_future(awaitable)
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if task.done():
        return True, task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    return False, None
