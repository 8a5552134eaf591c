"""Ports: the protocols the domain needs from the outside world, and the errors adapters raise.

Adapters implement these structurally (``typing.Protocol``); nothing here imports an I/O
library. Domain value types (states, journal) are shared from ``teg_ota.domain``.
"""

from teg_ota.ports.clock import Clock
from teg_ota.ports.container_runtime import (
    BuildFailed,
    ContainerRuntime,
    ContainerRuntimeError,
    ControllerExit,
    ControllerState,
    Health,
    ImageInfo,
    RuntimeUnavailable,
    StartFailed,
    StopFailed,
)
from teg_ota.ports.source_repo import (
    FetchFailed,
    ResetFailed,
    SourceRepo,
    SourceRepoError,
    UnknownVersion,
)
from teg_ota.ports.telemetry_sink import OtaReport, TelemetryError, TelemetrySink
from teg_ota.ports.version_store import VersionStore, VersionStoreError

__all__ = [
    "BuildFailed",
    "Clock",
    "ContainerRuntime",
    "ContainerRuntimeError",
    "ControllerExit",
    "ControllerState",
    "FetchFailed",
    "Health",
    "ImageInfo",
    "OtaReport",
    "ResetFailed",
    "RuntimeUnavailable",
    "SourceRepo",
    "SourceRepoError",
    "StartFailed",
    "StopFailed",
    "TelemetryError",
    "TelemetrySink",
    "UnknownVersion",
    "VersionStore",
    "VersionStoreError",
]
