"""``teg-ota`` imports what a command needs when it needs it (issue 14), held as a property
of the real command, not as a timing: each case runs ``python -X importtime -m teg_ota ...``
in a fresh interpreter and reads the modules it imported from the interpreter's own report.

``--help``, ``--version`` and a usage error import none of the libraries (not even loguru);
``status`` imports the Docker SDK and the version store, never gmqtt, dulwich or
dependency-injector. Importing ``teg_ota`` imports nothing, and loguru stays disabled for
``teg_ota`` whichever of the two is imported first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

LIBRARIES = frozenset({"gmqtt", "dulwich", "docker", "dependency_injector", "loguru"})
COMPOSITION = frozenset({"gmqtt", "dulwich", "dependency_injector"})
"""What only the commands that build the whole composition may import."""


def _env(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TEG_", "GATEWAY_", "LOGURU_", "DOCKER_", "PYTHONWARNINGS"))
    }
    env["GATEWAY_DATA_PATH"] = str(tmp_path / "data")
    # status must answer without an engine: one that cannot exist, so the test never needs
    # (nor touches) a real dockerd.
    env["DOCKER_HOST"] = f"unix://{tmp_path}/no-engine.sock"
    return env


def _run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """The command's result and the top-level names of every module it imported."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "teg_ota", *args],
        env=_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    imported = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            name = line.rsplit("|", 1)[1].strip()
            imported.add(name.split(".")[0])
    assert "teg_ota" in imported, result.stderr[-2000:]  # the report was read
    return result, imported


@pytest.mark.parametrize("args", [("--help",), ("--version",), (), ("status", "--bogus")])
def test_help_version_and_usage_errors_import_no_library(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    result, imported = _run(tmp_path, *args)

    assert result.returncode in (0, 2), result.stderr[-2000:]
    assert "teg-ota" in result.stdout + result.stderr
    assert imported & LIBRARIES == set()


def test_status_imports_the_docker_sdk_and_the_store_only(tmp_path: Path) -> None:
    result, imported = _run(tmp_path, "status", "--json")

    assert result.returncode == 4, result.stderr[-2000:]  # the engine is unreachable
    status = json.loads(result.stdout)
    assert status["engine_error"]
    assert status["running"] is False
    assert "docker" in imported  # it did ask the engine
    assert imported & COMPOSITION == set()
    assert not (tmp_path / "data").exists()  # a read: nothing created


_PROBE = textwrap.dedent(
    """
    import sys

    if sys.argv[1] == "loguru-first":
        import loguru
    import teg_ota

    print("loguru" in sys.modules)
    from loguru import logger

    assert teg_ota.logger is logger
    namespace = {"__name__": "teg_ota.adapters.probe"}
    exec("from loguru import logger\\nlogger.warning('probe-marker')", namespace)
    logger.warning("outside-marker")
    """
)


@pytest.mark.parametrize(
    ("order", "loguru_before"), [("teg-ota-first", "False"), ("loguru-first", "True")]
)
def test_loguru_is_disabled_for_teg_ota_whichever_is_imported_first(
    tmp_path: Path, order: str, loguru_before: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, order],
        env=_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [loguru_before]  # importing teg_ota imported no loguru
    assert "probe-marker" not in result.stderr
    assert "outside-marker" in result.stderr  # loguru itself was left alone
