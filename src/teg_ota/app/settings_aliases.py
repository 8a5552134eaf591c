"""The original TEG gateway's environment variables, read as aliases of teg-ota's, so that
a gateway set up for the original runs unchanged (docs/migration.md). teg-ota's own name
wins when both are set."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from teg_ota.app.settings_parsers import ConfigError

ALIASES: dict[str, str] = {
    # the original gateway's name -> teg-ota's (teg-ota's wins when both are set)
    "TEG_CONTROLLER_GIT_PATH": "CONTROLLER_GIT_PATH",
    "TEG_DATA_PATH": "GATEWAY_DATA_PATH",
    "TB_HOST": "TEG_MQTT_HOST",
    "TB_PORT": "TEG_MQTT_PORT",
    "THINGSBOARD_ACCESS_TOKEN": "TEG_MQTT_TOKEN_FILE",
    "THINGSBOARD_CA_CERT": "TEG_MQTT_CA_FILE",
    "TEG_CONTROLLER_DOCKERCONTEXT_PATH": "TEG_CONTROLLER_BUILD_CONTEXT",
    "TEG_CONTROLLER_DOCKERFILE_PATH": "TEG_CONTROLLER_DOCKERFILE",
    "THINGSBOARD_PROVISION_DEVICE_KEY": "TEG_PROVISION_KEY",
    "THINGSBOARD_PROVISION_DEVICE_SECRET": "TEG_PROVISION_SECRET",
    "THINGSBOARD_DEVICE_NAME": "TEG_DEVICE_NAME",
}
"""Read so that a gateway set up for the original runs unchanged (docs/migration.md)."""
_ALIAS_BLOCKED_BY = {
    "THINGSBOARD_ACCESS_TOKEN": ("TEG_MQTT_TOKEN", "TEG_MQTT_TOKEN_FILE", "TEG_MQTT_USERNAME"),
}
"""Aliases that also give way to these teg-ota settings (another way to say the same)."""


def read_aliases(
    environ: Mapping[str, str], raw: dict[str, str], default_git_path: str
) -> tuple[str, ...]:
    """Fill ``raw`` from the original gateway's variables where teg-ota's are not set;
    the original names that were read."""
    used: list[str] = []
    for original, name in ALIASES.items():
        value = environ.get(original)
        if (
            value is None
            or name in raw
            or any(n in raw for n in _ALIAS_BLOCKED_BY.get(original, ()))
        ):
            continue
        if original in ("TEG_CONTROLLER_GIT_PATH", "TEG_DATA_PATH") and not value.strip():
            continue
        raw[name] = value
        used.append(original)
    if "TEG_CONTROLLER_GIT_PATH" in used:
        # The original points at the .git directory; teg-ota at the work tree (both work).
        git = raw["CONTROLLER_GIT_PATH"].strip().rstrip("/")
        raw["CONTROLLER_GIT_PATH"] = git.removesuffix("/.git") if git.endswith("/.git") else git
    if "TEG_CONTROLLER_DOCKERCONTEXT_PATH" in used:
        raw["TEG_CONTROLLER_BUILD_CONTEXT"] = _inside_work_tree(
            raw["TEG_CONTROLLER_BUILD_CONTEXT"].strip(),
            raw.get("CONTROLLER_GIT_PATH", default_git_path),
        )
    if "THINGSBOARD_CA_CERT" in used and "TEG_MQTT_TLS" not in raw:
        raw["TEG_MQTT_TLS"] = "1"  # the original always used TLS with its CA
    return tuple(used)


def _inside_work_tree(context: str, work_tree: str) -> str:
    """The original's build context may be absolute: relative to the work tree then."""
    if not context.startswith("/"):
        return context
    try:
        return str(Path(context).relative_to(Path(work_tree.rstrip("/") or "/"))) or "."
    except ValueError:
        raise ConfigError(
            f"TEG_CONTROLLER_DOCKERCONTEXT_PATH={context!r}: not inside the controller "
            f"repository {work_tree}"
        ) from None
