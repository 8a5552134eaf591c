"""The connection to the engine: one lazily created SDK client, and its errors as port errors.

One process-wide SDK client per engine address, created on first use and shared by every
runtime: creating it contacts the engine (API version negotiation), so a daemon that is down
at start-up does not prevent construction, only the calls made while it is down. Every
failure to reach the engine (socket missing, connection refused or dropped, read timeouts,
5xx answers to read-only queries while the daemon restarts) becomes
:class:`RuntimeUnavailable`; a client whose connection failed is dropped from the cache and
recreated on the next call, so the same runtime works again once the daemon is back,
without restarting the process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import docker
import docker.errors
import requests
import urllib3.exceptions
from docker.types import CancellableStream
from loguru import logger

from teg_ota.domain.model.errors import BuildFailed, ContainerRuntimeError, RuntimeUnavailable

MAX_MESSAGE = 400
"""Longest engine message copied into an error (it ends up in ``sw_error``)."""

NOT_REACHABLE: tuple[type[BaseException], ...] = (
    requests.exceptions.RequestException,
    urllib3.exceptions.HTTPError,
    OSError,
)
"""Failures to talk to the engine at all. ``docker.errors.APIError`` also derives from
``requests.exceptions.RequestException``: it is always handled before these."""

_clients: dict[str | None, docker.DockerClient] = {}
_clients_lock = threading.Lock()


def short(exc: BaseException) -> str:
    """One line of at most :data:`MAX_MESSAGE` characters: error texts end up in ``sw_error``."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def explanation(exc: BaseException) -> str:
    """The engine's own words for an ``APIError`` (its ``message``), else the HTTP error."""
    said = getattr(exc, "explanation", None)
    if isinstance(said, bytes):
        said = said.decode("utf-8", "replace")
    if said:
        return short(Exception(said))
    return short(exc)


def _is_server_error(exc: BaseException) -> bool:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return isinstance(status, int) and status >= 500


def client_for(base_url: str | None) -> docker.DockerClient:
    """The process-wide ``docker.DockerClient`` for ``base_url``, created on first use."""
    with _clients_lock:
        client = _clients.get(base_url)
        if client is not None:
            return client
        where = base_url or "the default engine (DOCKER_HOST or /var/run/docker.sock)"
        try:
            if base_url is None:
                client = docker.from_env()
            else:
                client = docker.DockerClient(base_url=base_url)
        except docker.errors.DockerException as exc:
            raise RuntimeUnavailable(
                f"container engine unavailable at {where}: {short(exc)}"
            ) from exc
        except NOT_REACHABLE as exc:
            raise RuntimeUnavailable(
                f"container engine unavailable at {where}: {short(exc)}"
            ) from exc
        _clients[base_url] = client
        return client


def forget_client(base_url: str | None, client: docker.DockerClient) -> None:
    """Drop ``client`` from the cache (if still cached) after its connection failed."""
    with _clients_lock:
        if base_url not in _clients or _clients[base_url] is not client:
            return
        del _clients[base_url]
    try:
        client.close()
    except Exception as exc:  # noqa: BLE001 - closing a broken client must never mask the cause
        logger.debug("closing a broken docker client failed: {}", exc)


class Engine:
    """The engine at one address, as the runtime's parts talk to it."""

    def __init__(self, base_url: str | None) -> None:
        self._base_url = base_url

    def client(self) -> docker.DockerClient:
        return client_for(self._base_url)

    def answers_a_fresh_ping(self, timeout_s: float = 2.0) -> bool:
        """Whether the engine answers ``/_ping`` on a *new* connection within ``timeout_s``.

        Not through the cached client: a stopping dockerd keeps serving the connections
        already open (the SDK's pooled ones among them) while it stops every container, and
        with systemd socket activation (Debian's ``-H fd://``) the listener even stays open,
        so only a full round trip on a fresh connection tells a shutdown (refused, or no
        answer in time) from a controller's own exit. TLS and ssh addresses are handled by
        the SDK as for every call.
        """
        try:
            version = self.client().api.api_version
        except RuntimeUnavailable:
            return False
        fresh: docker.DockerClient | None = None
        try:
            if self._base_url is None:
                fresh = docker.from_env(version=version, timeout=timeout_s)
            else:
                fresh = docker.DockerClient(
                    base_url=self._base_url, version=version, timeout=timeout_s
                )
            return bool(fresh.ping())
        except Exception as exc:  # noqa: BLE001 - any failure to answer is "not answering"
            logger.debug("fresh ping of the engine failed: {}", short(exc))
            return False
        finally:
            if fresh is not None:
                close_quietly(fresh, None)

    @contextmanager
    def session(
        self,
        action: str,
        failure: type[ContainerRuntimeError] = ContainerRuntimeError,
    ) -> Iterator[Any]:
        """Yield the client; translate what the SDK raises into the port's errors.

        Unreachable engine -> :class:`RuntimeUnavailable` (and the client is recreated next
        time). An ``APIError`` -> ``failure`` with the engine's explanation, except that a 5xx
        answer to a plain query (``failure`` is the base class) means the engine is not in a
        state to answer: :class:`RuntimeUnavailable`.
        """
        client = self.client()
        try:
            yield client
        except ContainerRuntimeError:
            raise
        except docker.errors.APIError as exc:
            if failure is ContainerRuntimeError and _is_server_error(exc):
                raise RuntimeUnavailable(
                    f"{action}: container engine error: {explanation(exc)}"
                ) from exc
            raise failure(f"{action}: {explanation(exc)}") from exc
        except NOT_REACHABLE as exc:
            forget_client(self._base_url, client)
            raise RuntimeUnavailable(
                f"{action}: container engine unreachable: {short(exc)}"
            ) from exc
        except docker.errors.DockerException as exc:
            raise failure(f"{action}: {short(exc)}") from exc


def cancellable(chunks: Iterator[Any]) -> Iterator[Any]:
    """Wrap an SDK response generator so another thread can close its connection.

    ``APIClient.build`` and ``load_image`` send the request and return a generator over the
    response; the response is the generator's first argument. When it cannot be found (an
    SDK change), the generator is returned as is and only the per-read timeout bounds it.
    """
    frame = getattr(chunks, "gi_frame", None)
    response = frame.f_locals.get("response") if frame is not None else None
    if response is None or not hasattr(response, "raw"):
        logger.debug("cannot reach the stream's connection; relying on the read timeout")
        return chunks
    if not getattr(getattr(response.raw, "_fp", None), "chunked", False):
        # An immediate error answer: the generator raises its APIError, which
        # CancellableStream (it swallows OSError, and APIError is one) would hide.
        return chunks
    wrapped: Iterator[Any] = CancellableStream(chunks, response)
    return wrapped


def close_quietly(stream: object, closed: threading.Event | None) -> None:
    """Close an engine stream from any thread; ``closed`` records that the timer fired."""
    if closed is not None:
        closed.set()
    close = getattr(stream, "close", None)
    if close is None:
        return
    try:
        close()
    except (OSError, AttributeError, ValueError, docker.errors.DockerException) as exc:
        logger.debug("closing a docker stream: {}", exc)


@contextmanager
def bounded(
    stream: object,
    deadline: float,
    action: str,
    timeout_s: float,
    failure: type[ContainerRuntimeError] = BuildFailed,
) -> Iterator[None]:
    """Close ``stream`` at ``deadline`` from a timer thread; a stream so ended is a timeout.

    Closing the connection is what makes the engine cancel a build: an abandoned read
    would let it run on. What the closing makes the read raise is not the cause, the
    deadline is: it becomes ``failure``, "timed out after N s".
    """
    timed_out = threading.Event()
    timer = threading.Timer(
        max(0.0, deadline - time.monotonic()), close_quietly, args=(stream, timed_out)
    )
    timer.daemon = True
    timer.start()
    try:
        yield
    except (*NOT_REACHABLE, docker.errors.DockerException) as exc:
        if timed_out.is_set():
            raise failure(f"{action}: timed out after {timeout_s:g} s") from exc
        raise
    finally:
        timer.cancel()
        close_quietly(stream, None)
    if timed_out.is_set():
        raise failure(f"{action}: timed out after {timeout_s:g} s")


def raise_on_error(chunk: object, action: str, failure: type[ContainerRuntimeError]) -> None:
    """An error in a JSON progress stream (the HTTP answer itself was a success)."""
    if isinstance(chunk, Mapping) and ("error" in chunk or "errorDetail" in chunk):
        detail = chunk.get("errorDetail") or {}
        message = chunk.get("error") or (
            detail.get("message") if isinstance(detail, Mapping) else None
        )
        raise failure(f"{action}: {short(Exception(message or 'unknown error'))}")
