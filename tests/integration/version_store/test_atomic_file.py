"""write_atomic and read_text_or_none, the crash-safe small-file primitives of the stores
(the SIGKILL test is in test_file_version_store_crashes.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from file_version_store_support import temp_files

from teg_ota.adapters.atomic_file import read_text_or_none, write_atomic


def test_write_atomic_failure_keeps_the_old_content_and_removes_the_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "file"
    write_atomic(target, b"old")

    def failing_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("teg_ota.adapters.atomic_file.os.fsync", failing_fsync)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(target, b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert temp_files(target) == []


def test_read_text_or_none(tmp_path: Path) -> None:
    target = tmp_path / "file"
    assert read_text_or_none(target) is None
    write_atomic(target, "grüße\n".encode())
    assert read_text_or_none(target) == "grüße\n"
    assert read_text_or_none(target, max_bytes=8) == "grüße\n"
    with pytest.raises(ValueError, match="larger than 4 bytes"):
        read_text_or_none(target, max_bytes=4)
    target.write_bytes(b"\xff")
    with pytest.raises(UnicodeDecodeError):
        read_text_or_none(target)
    with pytest.raises(OSError):
        read_text_or_none(tmp_path)
