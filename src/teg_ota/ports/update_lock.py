"""UpdateLock port: the controller's say in when it may be stopped (issue 15).

The controller holds the lock while it must not be interrupted (a measurement, a valve
sequence); teg-ota takes the same lock before it stops the controller and keeps it until the
new one has started, so the controller cannot enter a critical section in the middle of a
swap. Taking it never blocks: the domain polls, so it can report the wait, give up after
its maximum, or be told to force the swap.
"""

from typing import Protocol


class UpdateLock(Protocol):
    @property
    def where(self) -> str:
        """What the lock is, for log lines and the ``update_deferred`` text (its path)."""
        ...

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it; True when teg-ota holds it now (also when it
        already did). A lock that cannot be used at all (its directory unwritable, the path
        a directory) counts as free: a broken lock file must never block updates for good."""
        ...

    def release(self) -> None:
        """Let go of the lock (no-op when not held)."""
        ...
