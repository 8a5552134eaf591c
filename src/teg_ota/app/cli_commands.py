"""What every ``teg-ota`` command does first (settings, logging), then the command itself,
from the one module it needs.

Each command lives in a module that imports exactly what it uses, and only the chosen one is
imported (issue 14): ``status`` reads the engine and the version store
(:mod:`teg_ota.app.cli_status`), the others build the whole composition
(:mod:`teg_ota.app.cli_container`) with gmqtt, dulwich and dependency-injector.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

from teg_ota.app.logging_setup import configure_logging
from teg_ota.app.settings import ConfigError, Settings, load_settings, unknown_variables

__all__ = ["run_command", "settings_for", "unknown_variables"]

Command = Callable[[Settings, argparse.Namespace], int]

_COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("teg_ota.app.cli_container", "run"),
    "status": ("teg_ota.app.cli_status", "status"),
    "update": ("teg_ota.app.cli_container", "update"),
    "rollback": ("teg_ota.app.cli_container", "rollback"),
    "doctor": ("teg_ota.app.cli_container", "doctor"),
}
"""command -> (module, function): imported when that command is chosen, not before."""


def settings_for(args: argparse.Namespace) -> Settings | None:
    """The settings, with logging configured by them; ``None`` (the one line naming the
    variable printed) when they are invalid."""
    try:
        settings = load_settings(config_file=args.config)
    except ConfigError as exc:
        print(f"teg-ota: configuration error: {exc}", file=sys.stderr)
        return None
    configure_logging(settings.log_level, settings.log_format)
    return settings


def run_command(settings: Settings, args: argparse.Namespace) -> int:
    module, function = _COMMANDS[args.command]
    command: Command = getattr(importlib.import_module(module), function)
    return command(settings, args)
