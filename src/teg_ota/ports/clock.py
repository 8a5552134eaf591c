"""Clock port: every time-based decision (backoff, health grace) goes through it, so tests
drive time by hand instead of sleeping."""

from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock Unix seconds: for timestamps that must survive a reboot."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin that never jumps: for measuring intervals."""
        ...

    def sleep(self, seconds: float) -> None: ...
