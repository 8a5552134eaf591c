"""What an error means, decided in one place: whom to blame, and whether the update can be
decided at all (engine lost).

Blame drives memory: only a failure seen against the new version is remembered, so the
assignment ThingsBoard re-sends is not retried. A transient fault (the origin unreachable,
or rate-limited or failing until the fetch retries ran out: ``SourceTransientFault`` is a
``FetchFailed``) or the gateway's own fault (it cannot write its files, too little disk) is
told to the operator but says nothing against the version.
"""

from __future__ import annotations

import enum

from teg_ota.domain.model.errors import (
    DiskSpaceLow,
    FetchFailed,
    GatewayFault,
    RuntimeUnavailable,
    TagMoved,
    VersionStoreError,
)


class Blame(enum.StrEnum):
    VERSION = "version"
    """Observed against the new version (build failed, exited, unhealthy, would not start)."""
    GATEWAY = "gateway"
    """The gateway's own fault (its files, its disk): fix the gateway, retry the same version."""
    NOBODY = "nobody"
    """Transient, an interruption (origin unreachable, power cut) or the remote's doing (a
    moved tag): retried when re-sent."""


def blame(error: BaseException) -> Blame:
    if isinstance(error, FetchFailed | RuntimeUnavailable | TagMoved):
        return Blame.NOBODY
    if isinstance(error, VersionStoreError | DiskSpaceLow | GatewayFault):
        return Blame.GATEWAY
    return Blame.VERSION


def engine_lost(error: BaseException) -> bool:
    """True when nothing can be known without the engine: the journal is kept and recovery
    decides once the engine answers again (at or after the swap)."""
    return isinstance(error, RuntimeUnavailable)


def remembered(who: Blame) -> bool:
    return who is Blame.VERSION
