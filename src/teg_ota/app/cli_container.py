"""The ``teg-ota`` commands that need the whole composition: ``run``, ``update``,
``rollback`` and ``doctor`` (MQTT, Git and Docker together). Imported only when one of them
is chosen (:mod:`teg_ota.app.cli_commands`); ``status`` does without it."""

from __future__ import annotations

import argparse
import sys

from teg_ota.app.container import Container, build_container
from teg_ota.app.doctor import run_checks
from teg_ota.app.exit_codes import EXIT_FAILED, EXIT_LOCKED, EXIT_OK, EXIT_USAGE
from teg_ota.app.process_lock import AlreadyLocked, ProcessLock
from teg_ota.app.runner import FLUSH_TIMEOUT_S, run_forever
from teg_ota.app.settings import Settings
from teg_ota.domain.model.errors import InvalidVersion
from teg_ota.domain.model.versions import parse_version


def _container(settings: Settings) -> Container:
    return build_container(settings)


def run(settings: Settings, args: argparse.Namespace) -> int:
    try:
        with ProcessLock(settings.data_path):
            return run_forever(_container(settings), settings)
    except AlreadyLocked as exc:
        print(f"teg-ota: {exc}", file=sys.stderr)
        return EXIT_LOCKED


def update(settings: Settings, args: argparse.Namespace) -> int:
    return _operate(settings, args.version, args.force)


def rollback(settings: Settings, args: argparse.Namespace) -> int:
    return _operate(settings, None, False)


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


def doctor(settings: Settings, args: argparse.Namespace) -> int:
    problems = 0
    for check in run_checks(settings):
        mark = "ok  " if check.ok else "FAIL"
        print(f"[{mark}] {check.name}: {check.detail}")
        if not check.ok:
            problems += 1
            print(f"       fix: {check.fix}")
    return EXIT_FAILED if problems else EXIT_OK
