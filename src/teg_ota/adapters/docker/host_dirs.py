"""Host directories of the controller's bind mounts, created before its container is.

For a missing bind-mount source the engine creates a directory itself, owned by root and
mode 0755, or (a remote or rootless engine) refuses the start. Creating them here, right
before each container is created, makes the mode explicit and the creation visible in
teg-ota's log, and brings back a directory removed while teg-ota runs. A creation that fails
(a file in the way, a read-only file system) is logged and the start goes on with every
mount as configured: the engine then creates the directory itself or refuses the start with
its own message (a ``StartFailed``); the controller is not started without its data.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from loguru import logger

from teg_ota.adapters.docker.client import short

DIRECTORY_MODE = 0o755


def ensure_directories(paths: Iterable[str]) -> None:
    for path in paths:
        if os.path.isdir(path):
            continue
        try:
            os.makedirs(path, mode=DIRECTORY_MODE, exist_ok=True)
            os.chmod(path, DIRECTORY_MODE)  # makedirs' mode is masked by the umask
        except OSError as exc:
            logger.warning(
                "could not create {} for the controller's mounts ({}); starting with it "
                "anyway (the engine creates it, or says why not)",
                path,
                short(exc),
            )
            continue
        logger.info("created {} (mode 0755) for the controller's mounts", path)
