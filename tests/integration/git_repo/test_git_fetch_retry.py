"""The real Git adapter against a real smart-HTTP Git server that rate-limits: dulwich's
own server (``dulwich.web`` under ``wsgiref``) serving a repository the ``git`` CLI built,
behind a gate that answers 429 (or 503, or 401) to the first requests.

What the domain's retry (``services.fetch_retry``) needs of the adapter: a 429 or 5xx is
raised as the transient domain fault, so the fetch is tried again and succeeds; with the
budget used up the fault says so; an authentication failure is not retried. Real time
(the system clock) with short steps and a seeded random source.
"""

from __future__ import annotations

import os
import random
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIServer, make_server

import pytest
from dulwich.errors import NotGitRepository
from dulwich.repo import Repo
from dulwich.server import Backend
from dulwich.web import WSGIRequestHandlerLogger, make_wsgi_chain
from git_remote import Remote

from teg_ota.adapters.git import DulwichSourceRepo, GitPackageSource
from teg_ota.adapters.system_clock import SystemClock
from teg_ota.domain.model.errors import (
    FetchFailed,
    SourceRateLimited,
    SourceTemporarilyUnavailable,
    SourceTransientFault,
)
from teg_ota.domain.model.fetch_retry_policy import FetchRetryPolicy
from teg_ota.domain.model.package import PackageRef
from teg_ota.domain.model.versions import parse_version
from teg_ota.domain.services.fetch_retry import FetchRetry

FAST = FetchRetryPolicy(retries=3, initial_s=0.05, max_s=0.2)


class _ServedRepo(Backend):
    """The bare remote, opened afresh for every request (what the test pushes is served)."""

    def __init__(self, bare: Path) -> None:
        self._bare = bare

    def open_repository(self, path: str | bytes) -> Any:
        if os.fsdecode(path) != "/ctl.git":
            raise NotGitRepository(path)
        return Repo(str(self._bare))


@dataclass
class GatedServer:
    """Answers ``status`` to the next ``refuse`` requests, then serves the repository."""

    port: int = 0
    status: str = "429 Too Many Requests"
    refuse: int = 0
    refused: list[str] = field(default_factory=list)
    served: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/ctl.git"


@pytest.fixture
def server(remote: Remote) -> Iterator[GatedServer]:
    git_app = make_wsgi_chain(_ServedRepo(remote.bare))
    gate = GatedServer()
    lock = threading.Lock()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}"
        with lock:
            refusing = gate.refuse > 0
            gate.refuse -= 1 if refusing else 0
        if refusing:
            gate.refused.append(request)
            headers = [("Content-Length", "0"), ("Retry-After", "0")]
            if gate.status.startswith("401"):
                headers.append(("WWW-Authenticate", 'Basic realm="git"'))
            start_response(gate.status, headers)
            return [b""]
        gate.served.append(request)
        return git_app(environ, start_response)

    class Quiet(WSGIRequestHandlerLogger):
        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd: WSGIServer = make_server("127.0.0.1", 0, app, handler_class=Quiet)
    gate.port = httpd.server_port
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield gate
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def package(version: str) -> PackageRef:
    return PackageRef(version=parse_version(version), title="teg-controller")


def retrying(policy: FetchRetryPolicy = FAST) -> FetchRetry:
    return FetchRetry(SystemClock(), policy, random.Random(16))


def cloned(server: GatedServer, controller_path: Path) -> GitPackageSource:
    source = GitPackageSource(DulwichSourceRepo(str(controller_path), url=server.url))
    assert retrying().resolve(source, package("v1.0"))  # the first clone, not limited
    return source


def test_a_rate_limited_fetch_is_retried_until_it_succeeds(
    server: GatedServer, remote: Remote, controller_path: Path
) -> None:
    source = cloned(server, controller_path)
    second = remote.commit({"app.py": "print('v2')\n"}, "second")
    remote.tag("v1.1")
    remote.push()
    server.refuse = 2

    assert retrying().resolve(source, package("v1.1")) == second
    assert len(server.refused) == 2


def test_a_rate_limited_clone_is_retried_too(server: GatedServer, controller_path: Path) -> None:
    server.refuse = 1
    source = GitPackageSource(DulwichSourceRepo(str(controller_path), url=server.url))

    assert retrying().resolve(source, package("v1.0"))
    assert server.refused and (controller_path / ".git").is_dir()


def test_server_errors_are_retried(server: GatedServer, controller_path: Path) -> None:
    source = cloned(server, controller_path)
    server.status, server.refuse = "503 Service Unavailable", 2

    assert retrying().resolve(source, package("v1.0"))
    assert len(server.refused) == 2


def test_the_budget_ends_in_the_domain_fault(server: GatedServer, controller_path: Path) -> None:
    source = cloned(server, controller_path)
    server.refuse = 100
    with pytest.raises(SourceRateLimited, match="gave up after 1 attempt"):
        retrying(FetchRetryPolicy(retries=0)).resolve(source, package("v1.0"))
    per_attempt = len(server.refused)  # what dulwich asks before it gives up once
    server.refused.clear()

    with pytest.raises(SourceRateLimited) as raised:
        retrying().resolve(source, package("v1.0"))

    message = str(raised.value)
    assert message.startswith("the Git server rate-limited the fetch (HTTP 429): fetching")
    assert message.endswith(f"gave up after {FAST.attempts} attempts")
    assert len(server.refused) == per_attempt * FAST.attempts


def test_an_authentication_failure_is_not_retried(
    server: GatedServer, controller_path: Path
) -> None:
    source = cloned(server, controller_path)
    server.status, server.refuse = "401 Unauthorized", 100

    with pytest.raises(FetchFailed) as raised:
        retrying().resolve(source, package("v1.0"))

    assert not isinstance(raised.value, SourceTransientFault)
    assert len(server.refused) == 1


def test_a_refused_connection_is_retried_then_given_up(controller_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/ctl.git"
    source = GitPackageSource(DulwichSourceRepo(str(controller_path), url=url))

    with pytest.raises(SourceTemporarilyUnavailable, match="gave up after 2 attempts"):
        retrying(FetchRetryPolicy(retries=1, initial_s=0.05, max_s=0.05)).resolve(
            source, package("v1.0")
        )
