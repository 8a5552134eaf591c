"""The provisioned credentials on disk: ``<data>/tb_credentials.json``, mode 0600.

Kept apart from the retry loop (:mod:`~teg_ota.adapters.mqtt.provision`) because it is the
one place that reads, writes, repairs and moves aside the file that holds the device's
secret; a restart reads it back and never provisions again.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from loguru import logger

from teg_ota.adapters.atomic_file import ensure_dir, write_atomic
from teg_ota.adapters.mqtt.provision_messages import (
    CREDENTIALS_FILE_NAME,
    CREDENTIALS_MODE,
    MAX_CREDENTIALS_FILE_BYTES,
    CorruptCredentials,
    DeviceCredentials,
    ProvisionError,
    credentials_from,
)


class CredentialsFile:
    """``<data>/tb_credentials.json``: the provisioned credentials, mode 0600.

    ``{"deviceName", "host", "credentialsType", "credentialsValue"}``: ThingsBoard's answer
    plus the device name and the server it came from (for the operator)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def in_data_path(cls, data_path: Path) -> CredentialsFile:
        return cls(data_path / CREDENTIALS_FILE_NAME)

    @property
    def corrupt_path(self) -> Path:
        return self.path.with_name(self.path.name + ".corrupt")

    def load(self) -> tuple[DeviceCredentials, str | None] | None:
        """``(credentials, device name)``, or None when there is no file. Raises
        :class:`CorruptCredentials` when it cannot be used. A file readable by others is
        set to mode 0600 (with a warning)."""
        try:
            with self.path.open("rb") as handle:
                mode = os.fstat(handle.fileno()).st_mode
                data = handle.read(MAX_CREDENTIALS_FILE_BYTES + 1)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise CorruptCredentials(
                f"cannot read it ({exc.strerror or type(exc).__name__})"
            ) from None
        if len(data) > MAX_CREDENTIALS_FILE_BYTES:
            raise CorruptCredentials(f"larger than {MAX_CREDENTIALS_FILE_BYTES} bytes")
        try:
            stored = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise CorruptCredentials("not JSON") from None
        if not isinstance(stored, dict):
            raise CorruptCredentials("not a JSON object")
        try:
            credentials = credentials_from(
                stored.get("credentialsType"), stored.get("credentialsValue")
            )
        except ProvisionError as exc:
            raise CorruptCredentials(str(exc)) from None
        name = stored.get("deviceName")
        if stat.S_IMODE(mode) & 0o077:
            self._restrict(stat.S_IMODE(mode))
        return credentials, name if isinstance(name, str) else None

    def save(self, credentials: DeviceCredentials, device_name: str, host: str) -> None:
        """Atomically and durably, mode 0600. Raises OSError."""
        data = {
            "deviceName": device_name,
            "host": host,
            "credentialsType": credentials.credentials_type,
            "credentialsValue": credentials.value(),
        }
        ensure_dir(self.path.parent)
        write_atomic(
            self.path, (json.dumps(data, indent=2) + "\n").encode("utf-8"), mode=CREDENTIALS_MODE
        )

    def move_aside(self) -> Path | None:
        """Rename the file to :attr:`corrupt_path` (replacing an older one); where it went,
        or None when that failed (then it stays, and a new provisioning overwrites it)."""
        try:
            os.replace(self.path, self.corrupt_path)
        except OSError:
            return None
        return self.corrupt_path

    def _restrict(self, mode: int) -> None:
        try:
            os.chmod(self.path, CREDENTIALS_MODE)
        except OSError as exc:
            logger.warning(
                "{} holds the device's credentials but is readable by others (mode {:o}) "
                "and cannot be changed ({}); run: chmod 600 {}",
                self.path,
                mode,
                exc.strerror or type(exc).__name__,
                self.path,
            )
            return
        logger.warning(
            "{} holds the device's credentials but was readable by others (mode {:o}); set to 600",
            self.path,
            mode,
        )
