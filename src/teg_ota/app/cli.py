"""``teg-ota``: run, status, update, rollback, doctor.

Exit codes (docs/configuration.md repeats them):
  0  success (for ``update``: updated or already running)
  1  the operation failed (update FAILED / rolled back / refused; doctor found problems)
  2  bad usage or configuration (one line names the variable)
  3  another teg-ota process manages this data directory
  4  the container engine is unreachable
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence

from loguru import logger

from teg_ota import __version__
from teg_ota.app.container import Container, build_container
from teg_ota.app.doctor import run_checks
from teg_ota.app.logging_setup import configure_logging
from teg_ota.app.process_lock import AlreadyLocked, ProcessLock
from teg_ota.app.runner import FLUSH_TIMEOUT_S, run_forever
from teg_ota.app.settings import ConfigError, Settings, load_settings, unknown_variables
from teg_ota.domain.model.errors import InvalidVersion
from teg_ota.domain.model.versions import parse_version
from teg_ota.ports.telemetry_sink import OtaReport

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_LOCKED, EXIT_ENGINE = 0, 1, 2, 3, 4


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
    try:
        settings = load_settings(config_file=args.config)
    except ConfigError as exc:
        print(f"teg-ota: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.log_level, settings.log_format)
    for name in unknown_variables():
        logger.warning("{} is not a teg-ota setting (see docs/configuration.md); ignored", name)
    command = {
        "run": _run,
        "status": _status,
        "update": _update,
        "rollback": _rollback,
        "doctor": _doctor,
    }[args.command]
    return command(settings, args)


def _container(settings: Settings) -> Container:
    return build_container(settings)


def _run(settings: Settings, args: argparse.Namespace) -> int:
    try:
        with ProcessLock(settings.data_path):
            return run_forever(_container(settings), settings)
    except AlreadyLocked as exc:
        print(f"teg-ota: {exc}", file=sys.stderr)
        return EXIT_LOCKED


class _NoTelemetry:
    """``status`` only reads, and may run next to the runner: it must not open the runner's
    outbox (opening one removes temporary files, which may be the runner's appends)."""

    def publish_ota_state(self, report: OtaReport) -> None:
        return None

    def publish_telemetry(self, values: Mapping[str, object]) -> None:
        return None

    def request_ota_attributes(self) -> None:
        return None


def _status(settings: Settings, args: argparse.Namespace) -> int:
    status = build_container(settings, telemetry=_NoTelemetry()).gateway().status()
    if args.json:
        print(json.dumps(status.to_dict(), sort_keys=True))
    else:
        for key, value in status.to_dict().items():
            print(f"{key:>14}: {value if value is not None else '-'}")
    return EXIT_ENGINE if status.engine_error else EXIT_OK


def _operate(settings: Settings, version: str | None, force: bool) -> int:
    """update (``version``) or rollback (``None``) under the data-directory lock, with
    ThingsBoard told through the durable outbox."""

    def show(line: str) -> None:
        print(line, flush=True)

    if version is not None:
        try:
            version = parse_version(version).value
        except InvalidVersion as exc:  # a typo is the operator's, not a device failure
            print(f"teg-ota: {exc}", file=sys.stderr)
            return EXIT_USAGE
    try:
        lock = ProcessLock(settings.data_path)
        lock.acquire()
    except AlreadyLocked as exc:
        print(f"teg-ota: {exc}; stop it first or let it do the update", file=sys.stderr)
        return EXIT_LOCKED
    try:
        container = _container(settings)
        link = container.telemetry()
        link.start()
        try:
            gateway = container.gateway()
            gateway.recover()  # finish an interrupted update before starting another
            if version is None:
                result = gateway.rollback()
            else:
                result = gateway.update(version, force=force, on_progress=show)
        finally:
            link.stop(FLUSH_TIMEOUT_S)
    finally:
        lock.release()
    print(f"{result.outcome.value}: {result.error or result.version}")
    return EXIT_OK if result.ok else EXIT_FAILED


def _update(settings: Settings, args: argparse.Namespace) -> int:
    return _operate(settings, args.version, args.force)


def _rollback(settings: Settings, args: argparse.Namespace) -> int:
    return _operate(settings, None, False)


def _doctor(settings: Settings, args: argparse.Namespace) -> int:
    problems = 0
    for check in run_checks(settings):
        mark = "ok  " if check.ok else "FAIL"
        print(f"[{mark}] {check.name}: {check.detail}")
        if not check.ok:
            problems += 1
            print(f"       fix: {check.fix}")
    return EXIT_FAILED if problems else EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
