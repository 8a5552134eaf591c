"""The host directories of the controller's mounts: created with mode 0755 before its
container is; a creation that fails is logged and does not stop the start."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from loguru import logger

from teg_ota.adapters.docker.host_dirs import ensure_directories


def test_missing_directories_are_created_with_mode_0755(tmp_path: Path) -> None:
    data, logs = tmp_path / "data", tmp_path / "elsewhere" / "logs"
    old = os.umask(0o077)
    try:
        ensure_directories([str(data), str(logs)])
    finally:
        os.umask(old)
    for directory in (data, logs):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o755


def test_an_existing_directory_is_left_as_it_is(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    ensure_directories([str(data)])
    assert stat.S_IMODE(data.stat().st_mode) == 0o700


def test_a_failed_creation_is_logged_and_the_rest_still_created(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("in the way")
    messages: list[str] = []
    logger.enable("teg_ota")
    sink = logger.add(lambda m: messages.append(m.record["message"]), level="WARNING")
    try:
        ensure_directories([str(blocker / "logs"), str(tmp_path / "data")])
    finally:
        logger.remove(sink)
        logger.disable("teg_ota")  # the library's default
    assert (tmp_path / "data").is_dir()
    assert len(messages) == 1 and str(blocker / "logs") in messages[0]
