"""A counting proxy in front of the Docker engine's socket: which API calls a process makes.

The idle benchmark points ``DOCKER_HOST`` of the ``teg-ota run`` it measures here, so it can
say not only what idling costs but which engine requests (``GET /containers/{id}/json``,
``GET /events``...) come back periodically: work an event stream could make unnecessary.
Requests are read off the client-to-engine bytes (HTTP/1.1 request lines); the bytes are
forwarded unchanged. Counting happens in the benchmark's process, never in the measured one.
"""

from __future__ import annotations

import collections
import contextlib
import re
import socket
import threading
from pathlib import Path

_REQUEST_LINE = re.compile(rb"(?:^|\r\n)(GET|POST|PUT|DELETE|HEAD) (/[^ ?]*)\S* HTTP/1\.[01]\r\n")
_API_VERSION = re.compile(r"^/v\d+\.\d+")
_CONTAINER_PATH = re.compile(r"^/containers/[^/]+/")
_IMAGE_PATH = re.compile(r"^/images/.+/json$")


def endpoint(method: bytes, path: bytes) -> str:
    """``GET /containers/{name}/json`` for ``GET /v1.47/containers/teg-controller/json``."""
    text = _API_VERSION.sub("", path.decode("ascii", "replace"))
    text = _CONTAINER_PATH.sub("/containers/{name}/", text)
    text = _IMAGE_PATH.sub("/images/{name}/json", text)
    return f"{method.decode()} {text}"


class CountingEngineProxy:
    """Listens on ``path``, forwards to the engine at ``target`` (a unix socket path)."""

    def __init__(self, path: Path, target: str) -> None:
        self.path, self.target = path, target
        self._server: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.requests: collections.Counter[str] = collections.Counter()
        self.connections = 0

    def start(self) -> CountingEngineProxy:
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(self.path))
        server.listen(64)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()
        return self

    def snapshot(self) -> tuple[collections.Counter[str], int]:
        """The requests and connections counted so far (copies)."""
        with self._lock:
            return collections.Counter(self.requests), self.connections

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return  # closed
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(self.target)
            except OSError:
                client.close()
                upstream.close()
                continue
            with self._lock:
                self.connections += 1
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if count:
                    found = [endpoint(m, p) for m, p in _REQUEST_LINE.findall(data)]
                    with self._lock:
                        self.requests.update(found)
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
        with contextlib.suppress(OSError):
            self.path.unlink()
