"""Fixtures of the git adapter tests: a real remote (``git`` CLI), the clone's path, and
no proxy variables leaking in from the machine (dulwich honours them)."""

from __future__ import annotations

from pathlib import Path

import pytest
from git_remote import PROXY_VARIABLES, Remote, make_remote


@pytest.fixture
def remote(tmp_path: Path) -> Remote:
    return make_remote(tmp_path)


@pytest.fixture
def controller_path(tmp_path: Path) -> Path:
    return tmp_path / "controller"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
