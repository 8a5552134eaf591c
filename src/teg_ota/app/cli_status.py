"""``teg-ota status``: the Docker runtime and the version store, nothing else.

Building the whole composition for a read would import dependency-injector, gmqtt and
dulwich for nothing (issue 14). ``status`` only reads and may run next to the runner, so it
never opens the runner's outbox either (opening one removes temporary files, which may be
the runner's appends).
"""

from __future__ import annotations

import argparse
import json

from teg_ota.app.exit_codes import EXIT_ENGINE, EXIT_OK
from teg_ota.app.local_zone import local_zone
from teg_ota.app.settings import Settings
from teg_ota.app.status_view import read_status
from teg_ota.app.wiring import status_ports, update_lock


def status(settings: Settings, args: argparse.Namespace) -> int:
    _configuration_warnings(settings)
    runtime, store = status_ports(settings)
    view = read_status(runtime, store)
    shown = view.to_dict()
    if args.json:
        print(json.dumps(shown, sort_keys=True))
    else:
        for key, value in shown.items():
            print(f"{key:>14}: {value if value is not None else '-'}")
    return EXIT_ENGINE if view.engine_error else EXIT_OK


def _configuration_warnings(settings: Settings) -> None:
    """The warnings ``status`` printed when it built the whole composition (an unknown
    ``TZ``, an update lock the controller cannot see), so the operator still sees them."""
    local_zone()
    update_lock(settings)
