"""Ports: the protocols the domain needs from the outside world, and the errors adapters raise.

Adapters implement these structurally (``typing.Protocol``); nothing here imports an I/O
library. Values and error types live in ``teg_ota.domain.model``; each port re-exports the
ones its callers need.
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
from teg_ota.ports.package_source import (
    BuildContext,
    ImageArchive,
    PackageRef,
    PackageSource,
    PackageSourceError,
    Staged,
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
    "BuildContext",
    "ImageArchive",
    "PackageRef",
    "PackageSource",
    "PackageSourceError",
    "Staged",
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
