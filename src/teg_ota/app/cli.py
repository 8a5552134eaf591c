"""``teg-ota``: run, status, update, rollback, doctor.

Exit codes (docs/configuration.md repeats them):
  0  success (for ``update``: updated or already running)
  1  the operation failed (update FAILED / rolled back / refused; doctor found problems)
  2  bad usage or configuration (one line names the variable)
  3  another teg-ota process manages this data directory
  4  the container engine is unreachable

Start-up cost is the point of this module's shape (issue 14): it imports only argparse, so
``--help``, ``--version`` and a usage error never pay for the libraries; with a command
chosen, :mod:`teg_ota.app.cli_commands` reads the settings and imports the one module that
command needs (``status`` the Docker SDK and the version store; ``run``, ``update``,
``rollback`` and ``doctor`` the whole composition). ``tests/unit/test_cli_lazy_imports.py``
holds it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from teg_ota import __version__
from teg_ota.app.exit_codes import EXIT_ENGINE, EXIT_FAILED, EXIT_LOCKED, EXIT_OK, EXIT_USAGE

__all__ = ["EXIT_ENGINE", "EXIT_FAILED", "EXIT_LOCKED", "EXIT_OK", "EXIT_USAGE", "main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="teg-ota",
        description="Keeps the TEG controller container running and updates it over the air.",
    )
    parser.add_argument("--config", help="TOML file of settings (environment variables win)")
    parser.add_argument("--version", action="version", version=f"teg-ota {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="the gateway runner (systemd starts this)")
    status = commands.add_parser("status", help="what runs, what is recorded, what is in flight")
    status.add_argument("--json", action="store_true", help="one JSON object")
    update = commands.add_parser("update", help="the safe update, from the command line")
    update.add_argument("version", help="a Git tag or a full 40-hex commit hash")
    update.add_argument("--force", action="store_true", help="retry a version that failed before")
    commands.add_parser("rollback", help="go back to the known-good version")
    commands.add_parser("doctor", help="check Docker, the repository, the data dir, the broker")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Only now, with a command chosen, is anything beyond argparse imported.
    from loguru import logger  # noqa: PLC0415 - lazy by design (module docstring)

    from teg_ota.app import cli_commands  # noqa: PLC0415

    settings = cli_commands.settings_for(args)
    if settings is None:
        return EXIT_USAGE
    for name in cli_commands.unknown_variables():  # logged here: its logger name is the CLI's
        logger.warning("{} is not a teg-ota setting (see docs/configuration.md); ignored", name)
    return cli_commands.run_command(settings, args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
