"""Domain errors: types, so callers branch on the kind of failure, not on message text.

Every message is written to be shown to an operator as ``sw_error`` as it is.
"""


class DomainError(Exception):
    """Base of every error the domain raises on its own account."""


class InvalidVersion(DomainError):
    """A requested version is neither a full commit hash nor an acceptable Git tag."""


class IllegalTransition(DomainError):
    """An OTA state was reported out of order, or after the update already ended."""


class UpdateFailed(DomainError):
    """An update could not be completed; the message names the cause for ``sw_error``."""


class DiskSpaceLow(UpdateFailed):
    """Too little free disk to build an image safely (a full disk takes the gateway down)."""


class VerificationFailed(UpdateFailed):
    """The image that would run does not carry the commit the requested version resolves to."""


class TagMoved(UpdateFailed):
    """A tag now names another commit than the one it named when it was installed: refused
    unless moved tags are allowed (``TEG_ALLOW_MOVED_TAGS``), never confirmed silently."""


class HealthCheckFailed(UpdateFailed):
    """The new controller exited or turned unhealthy within the health grace period."""


# ---- errors the ports raise (adapters translate every library error into one of these)


class ContainerRuntimeError(Exception):
    """Base of the runtime's errors; messages are safe to show as ``sw_error``."""


class RuntimeUnavailable(ContainerRuntimeError):
    """The container engine cannot be reached (down, restarting, socket missing)."""


class BuildFailed(ContainerRuntimeError):
    """An image build failed; the message carries the engine's own error."""


class StartFailed(ContainerRuntimeError):
    """The controller container could not be created or started."""


class GatewayFault(Exception):
    """Mixed into an error whose remedy is on the gateway (its settings, its engine), not a
    new version: such a failure is never held against the version (``core.failures``)."""


class EngineDiskFull(BuildFailed, GatewayFault):
    """The engine ran out of disk while building or loading an image."""


class PrivilegeRefused(StartFailed, GatewayFault):
    """The engine refuses ``privileged`` containers (a capability it lacks)."""


class DockerfileMissing(BuildFailed):
    """The commit has no Dockerfile (or no build context) where the default layout looks:
    the version's fault, remembered."""


class BuildSettingMissing(DockerfileMissing, GatewayFault):
    """The commit has no Dockerfile (or no build context) where the gateway's explicit build
    settings point: most likely a wrong setting, so not held against the version."""


class StopFailed(ContainerRuntimeError):
    """The controller container could not be stopped."""


class PackageSourceError(Exception):
    """Base of a package source's errors; messages never contain credentials."""


SourceRepoError = PackageSourceError
"""The git source's name for the same base (kept for the library API)."""


class FetchFailed(PackageSourceError):
    """The origin (a Git remote, a server) could not be reached or refused: transient."""


class SourceTransientFault(FetchFailed):
    """The origin answered "not now": a rate limit, a server error, a connection reset,
    refused or timed out. Retried with jittered backoff (``services.fetch_retry``) before the
    update fails; as a :class:`FetchFailed`, never held against the version."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        """How long the server asked to wait (``Retry-After``), when it said: the next
        delay is not shorter."""


class SourceRateLimited(SourceTransientFault):
    """The origin refused for now because too many ask at once (HTTP 429)."""


class SourceTemporarilyUnavailable(SourceTransientFault):
    """The origin failed for now (HTTP 5xx; a connection reset, refused or timed out)."""


class UnknownVersion(PackageSourceError):
    """The origin does not know the version (no such tag, commit or package)."""


class ResetFailed(PackageSourceError):
    """The work tree could not be brought to the requested commit."""


class TelemetryError(Exception):
    """Telemetry could not even be queued (e.g. the outbox is not writable)."""


class VersionStoreError(Exception):
    """The store could not persist a value (disk full, read-only file system)."""
