"""Which of dulwich's failures the Git source reports as "not now" (retried above it) and
which as they are; the repository's credential-free message is kept in either case."""

from __future__ import annotations

import pytest
from dulwich.client import HTTPProxyUnauthorized, HTTPUnauthorized
from dulwich.errors import GitProtocolError, HangupException, NotGitRepository
from urllib3.exceptions import (
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

from teg_ota.adapters.git.source import GitPackageSource
from teg_ota.adapters.git.transport_errors import transient_fault
from teg_ota.domain.model.errors import (
    FetchFailed,
    SourceRateLimited,
    SourceTemporarilyUnavailable,
)
from teg_ota.domain.model.package import PackageRef
from teg_ota.domain.model.versions import parse_version

URL = "https://git.example/controller.git/info/refs?service=git-upload-pack"


def http(status: int) -> GitProtocolError:
    return GitProtocolError(f"unexpected http resp {status} for {URL}")


def via_urllib3(reason: Exception) -> GitProtocolError:
    """As dulwich raises it: ``GitProtocolError(str(e)) from e``."""
    error = GitProtocolError("pool error")
    error.__cause__ = MaxRetryError(None, URL, reason)  # type: ignore[arg-type]
    return error


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (http(429), SourceRateLimited),
        (http(500), SourceTemporarilyUnavailable),
        (http(503), SourceTemporarilyUnavailable),
        (via_urllib3(NewConnectionError(None, "Connection refused")), SourceTemporarilyUnavailable),  # type: ignore[arg-type]
        (via_urllib3(ReadTimeoutError(None, URL, "read timed out")), SourceTemporarilyUnavailable),  # type: ignore[arg-type]
        (
            via_urllib3(ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))),
            SourceTemporarilyUnavailable,
        ),
        (ConnectionRefusedError(111, "Connection refused"), SourceTemporarilyUnavailable),
        (TimeoutError("timed out"), SourceTemporarilyUnavailable),
    ],
)
def test_not_now_is_transient(error: BaseException, kind: type) -> None:
    fault = transient_fault(error)
    assert fault is not None and fault.kind is kind


@pytest.mark.parametrize(
    "error",
    [
        HTTPUnauthorized("Basic", URL),
        HTTPProxyUnauthorized("Basic", URL),
        http(403),
        http(400),
        NotGitRepository(),
        HangupException(),
        via_urllib3(NameResolutionError("git.example", None, "no such host")),  # type: ignore[arg-type]
        ValueError("anything else"),
        None,
    ],
)
def test_a_refusal_is_not_transient(error: BaseException | None) -> None:
    assert transient_fault(error) is None


class FailingRepo:
    """A SourceRepo whose fetch fails as DulwichSourceRepo's does: its own message, raised
    "from None" while the transport's exception is handled."""

    worktree = "/fake"

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def fetch(self) -> None:
        try:
            raise self.error
        except BaseException:
            raise FetchFailed(
                "fetching the controller repository from https://git.example/c.git failed: ..."
            ) from None


PACKAGE = PackageRef(version=parse_version("v1.1"))


def test_the_source_raises_the_domain_fault_with_a_clear_message() -> None:
    source = GitPackageSource(FailingRepo(http(429)))  # type: ignore[arg-type]

    with pytest.raises(SourceRateLimited) as raised:
        source.resolve(PACKAGE)

    message = str(raised.value)
    assert message.startswith("the Git server rate-limited the fetch (HTTP 429): fetching")
    assert raised.value.__suppress_context__  # the transport's text is never shown


def test_the_source_passes_a_refusal_on_as_it_is() -> None:
    source = GitPackageSource(FailingRepo(HTTPUnauthorized("Basic", URL)))  # type: ignore[arg-type]

    with pytest.raises(FetchFailed) as raised:
        source.resolve(PACKAGE)

    assert type(raised.value) is FetchFailed
