"""The engine probe that tells an engine shutdown from a controller crash."""

from __future__ import annotations

import socket
from pathlib import Path

from teg_ota.adapters.docker.client import Engine, _socket_address


def test_a_listening_unix_socket_accepts(tmp_path: Path) -> None:
    path = tmp_path / "docker.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen(1)
        assert Engine(f"unix://{path}").accepts_new_connections()


def test_a_closed_listener_does_not_accept(tmp_path: Path) -> None:
    path = tmp_path / "docker.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))  # bound, never listening: what a closing dockerd leaves
        assert not Engine(f"unix://{path}").accepts_new_connections()
    assert not Engine(f"unix://{tmp_path / 'missing.sock'}").accepts_new_connections()


def test_tcp_addresses_are_probed() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
        server.listen(1)
        assert Engine(f"tcp://127.0.0.1:{port}").accepts_new_connections()
    assert not Engine(f"tcp://127.0.0.1:{port}").accepts_new_connections(timeout_s=0.5)


def test_addresses_that_cannot_be_probed_count_as_accepting() -> None:
    assert _socket_address("ssh://me@host:22")[1] is None
    assert Engine("ssh://me@host").accepts_new_connections()
    assert _socket_address("https://[::1]:2376") == (socket.AF_INET6, ("::1", 2376))
