"""The library never configures logging on import; ``configure_logging()`` turns it on.

Each case runs in a fresh interpreter (logging and loguru are process-wide state): it imports
``teg_ota`` and ``teg_ota.api``, then logs a warning three ways: through the stdlib logger of
a teg_ota module, through loguru from code whose module is named under ``teg_ota``, and from
a real teg_ota function (``FileVersionStore`` reading a corrupt version file).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

_SCRIPT = textwrap.dedent(
    """
    import logging
    import pathlib
    import sys

    import teg_ota
    import teg_ota.api

    if sys.argv[2] == "configured":
        from teg_ota.app.logging_setup import configure_logging

        configure_logging()

    logging.getLogger("teg_ota.domain.services.update_service").warning("stdlib-marker-1")
    namespace = {"__name__": "teg_ota.domain.embedded_probe"}
    exec("from loguru import logger\\nlogger.warning('loguru-marker-2')", namespace)

    from teg_ota.adapters.file_version_store import LAST_LAUNCHED_FILE, FileVersionStore

    data = pathlib.Path(sys.argv[1])
    (data / LAST_LAUNCHED_FILE).write_text("--corrupt-marker-3\\n")
    store = FileVersionStore(data, default_version="v1.0")
    assert store.last_launched() == "v1.0"
    print("done")
    """
)


def run_probe(tmp_path: Path, mode: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TEG_", "LOGURU_", "PYTHONWARNINGS"))
    }
    return subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(tmp_path), mode],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_importing_the_library_configures_no_logging(tmp_path: Path) -> None:
    result = run_probe(tmp_path, "library")

    assert result.returncode == 0, result.stderr
    assert result.stdout == "done\n"
    assert result.stderr == "", "the library printed logs without being asked to"


def test_configure_logging_shows_teg_ota_warnings(tmp_path: Path) -> None:
    result = run_probe(tmp_path, "configured")

    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if " WARNING " in line]
    expected = {
        "stdlib-marker-1": "teg_ota.domain.services.update_service:",
        "loguru-marker-2": "teg_ota.domain.embedded_probe:",
        "--corrupt-marker-3": "teg_ota.adapters.file_version_store:",
    }
    for marker, logger_name in expected.items():
        assert any(marker in line and logger_name in line for line in warnings), result.stderr
