"""Which of dulwich's transport failures mean "not now" (retry later) rather than "no".

dulwich 1.x reports an HTTP status it does not expect as a bare
:class:`dulwich.errors.GitProtocolError` ("unexpected http resp 429 for <url>"), without the
response: the status is read from that text, and a ``Retry-After`` header is not available.
Authentication (401 and 407 are their own exceptions, 403 a status) and a missing
repository (404 is ``NotGitRepository``) are never retried: asking again changes nothing.
A connection reset, refused or timed out (urllib3 under HTTP, the socket under ``git://``
and SSH) is a fault of the moment; a host name that does not resolve is not (a typo, or no
network at all: the ordinary fetch failure covers both).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from dulwich.errors import GitProtocolError

from teg_ota.domain.model.errors import (
    SourceRateLimited,
    SourceTemporarilyUnavailable,
    SourceTransientFault,
)

__all__ = ["TransientFault", "transient_fault"]

_HTTP_STATUS = re.compile(r"unexpected http resp (\d{3})\b")
_TOO_MANY_REQUESTS = 429
_MAX_CAUSES = 8
"""How deep the chain of causes is followed (it is short; the bound stops a cycle)."""


@dataclass(frozen=True, slots=True)
class TransientFault:
    """What to raise instead of the plain fetch failure, and why, for ``sw_error``."""

    kind: type[SourceTransientFault]
    why: str


def transient_fault(error: BaseException | None) -> TransientFault | None:
    """The transient fault ``error`` (or an exception it was raised from) shows, else
    ``None``: the failure is to be reported as it is, without a retry."""
    for exc in _chain(error):
        found = _classify(exc)
        if found is not None:
            return found
    return None


def _classify(exc: BaseException) -> TransientFault | None:
    if isinstance(exc, GitProtocolError):
        match = _HTTP_STATUS.search(str(exc))
        if match is not None:
            return _http_status(int(match.group(1)))
    # urllib3's exceptions without importing urllib3 (dulwich's dependency, not ours):
    # NameResolutionError subclasses NewConnectionError, so it is told apart by name first.
    names = {cls.__name__ for cls in type(exc).__mro__}
    if "NameResolutionError" in names:
        return None
    if names & {"NewConnectionError", "ConnectTimeoutError", "ReadTimeoutError"}:
        return TransientFault(
            SourceTemporarilyUnavailable, "the Git server did not answer (connection failed)"
        )
    if isinstance(exc, ConnectionError | TimeoutError):
        return TransientFault(
            SourceTemporarilyUnavailable,
            f"the connection to the Git server failed ({type(exc).__name__})",
        )
    return None


def _http_status(status: int) -> TransientFault | None:
    if status == _TOO_MANY_REQUESTS:
        return TransientFault(SourceRateLimited, "the Git server rate-limited the fetch (HTTP 429)")
    if 500 <= status <= 599:
        return TransientFault(
            SourceTemporarilyUnavailable, f"the Git server answered HTTP {status}"
        )
    return None


def _chain(error: BaseException | None) -> Iterator[BaseException]:
    """``error``, then what it was raised from or during (``__cause__``, ``__context__``,
    urllib3's ``reason``, an exception among its arguments), depth first."""
    seen: set[int] = set()
    stack = [error] if error is not None else []
    while stack and len(seen) < _MAX_CAUSES:
        exc = stack.pop()
        if id(exc) in seen:
            continue
        seen.add(id(exc))
        yield exc
        reason = getattr(exc, "reason", None)
        for nested in (*exc.args, exc.__context__, exc.__cause__, reason):
            if isinstance(nested, BaseException):
                stack.append(nested)
