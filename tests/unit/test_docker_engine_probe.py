"""The engine probe that tells an engine shutdown from a controller crash: a ping on a new
connection, answered in time (adapters/docker/client.py ``answers_a_fresh_ping``)."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import docker
import pytest

from teg_ota.adapters.docker import client as engine_client
from teg_ota.adapters.docker.client import Engine


class _Ping(BaseHTTPRequestHandler):
    """Just enough of dockerd: /version (the SDK's negotiation) and /_ping."""

    def do_GET(self) -> None:
        body = b'{"ApiVersion": "1.41"}' if self.path.endswith("/version") else b"OK"
        self.send_response(200)
        self.send_header("Api-Version", "1.41")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self):  # type: ignore[no-untyped-def]
        request, _ = super().get_request()
        return request, ("local", 0)  # BaseHTTPRequestHandler wants a (host, port)


@pytest.fixture
def answering(tmp_path: Path) -> Iterator[str]:
    path = tmp_path / "docker.sock"
    server = _UnixHTTPServer(str(path), _Ping)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"unix://{path}"
    server.shutdown()
    server.server_close()


def test_an_engine_that_answers_on_a_new_connection(answering: str) -> None:
    assert Engine(answering).answers_a_fresh_ping(timeout_s=2)


def test_a_listener_that_accepts_but_never_answers_is_going_down(tmp_path: Path) -> None:
    """systemd socket activation keeps the socket while dockerd stops (Debian's fd://)."""
    path = tmp_path / "docker.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen(8)
        engine = Engine(f"unix://{path}")
        engine_client._clients[f"unix://{path}"] = docker.DockerClient(
            base_url=f"unix://{path}", version="1.41"
        )
        try:
            assert not engine.answers_a_fresh_ping(timeout_s=0.5)
        finally:
            engine_client._clients.pop(f"unix://{path}", None)


def test_a_closed_listener_is_going_down(answering: str, tmp_path: Path) -> None:
    engine = Engine(answering)
    assert engine.answers_a_fresh_ping(timeout_s=2)  # the cached client exists now
    (tmp_path / "docker.sock").unlink()  # what a stopping dockerd does to its socket
    assert not engine.answers_a_fresh_ping(timeout_s=0.5)


def test_no_engine_at_all_is_not_answering(tmp_path: Path) -> None:
    assert not Engine(f"unix://{tmp_path / 'missing.sock'}").answers_a_fresh_ping(0.5)
