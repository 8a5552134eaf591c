"""The fingerprint of the settings a controller is built and run under.

A version that failed is remembered with it: a failure that came from the gateway (a
Dockerfile path set wrongly, an engine that refuses ``privileged``, a mount that does not
exist) stops counting against the version as soon as the operator fixes the setting. Only a
digest leaves the process, never the values (``git_url`` and the environment may hold
secrets).
"""

from __future__ import annotations

import hashlib
import json

from teg_ota.app.settings import Settings

FINGERPRINT_FIELDS = (
    "git_path",
    "git_url",
    "container_name",
    "image_prefix",
    "privileged",
    "network_mode",
    "restart_policy",
    "controller_env",
    "controller_mounts",
    "build_timeout_s",
    "health_grace_s",
    "health_timeout_s",
    "build_context",
    "dockerfile",
    "build_args",
    "controller_data_path",
    "controller_logs_path",
    "default_mounts",
    "log_driver",
    "log_options",
)
"""What decides whether a version can be built and run here; not the broker, logging,
backoff or disk-floor settings, which do not make a version fail its update."""


def settings_fingerprint(settings: Settings) -> str:
    values = {name: getattr(settings, name) for name in FINGERPRINT_FIELDS}
    for mapping in ("controller_env", "build_args", "log_options"):
        values[mapping] = sorted(dict(values[mapping]).items())
    values["controller_mounts"] = list(values["controller_mounts"])
    encoded = json.dumps(values, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(encoded).hexdigest()[:16]
