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


class HealthCheckFailed(UpdateFailed):
    """The new controller exited or turned unhealthy within the health grace period."""
