"""Logging for the runner and the CLI: loguru sinks, stdlib logging routed into loguru.

The library itself never configures logging on import; this module is called by the
runner/CLI (or by an embedding product that wants teg-ota's logs) to enable it.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from loguru import logger

if TYPE_CHECKING:
    from loguru import Message

_ROUTED_LOGGERS = ("teg_ota", "docker", "urllib3", "gmqtt", "dulwich")


class InterceptHandler(logging.Handler):
    """Send stdlib log records (teg_ota's domain, docker, gmqtt, urllib3) to loguru."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.patch(lambda r: r.update({"name": record.name})).opt(exception=record.exc_info).log(
            level, record.getMessage()
        )


def _json_sink(stream: TextIO) -> Callable[[Message], None]:
    def sink(message: Message) -> None:
        record = message.record
        entry = {
            "ts": record["time"].isoformat(),
            "level": record["level"].name,
            "logger": record["name"],
            "message": record["message"],
        }
        if record["exception"] is not None:
            entry["exception"] = str(record["exception"].value)
        stream.write(json.dumps(entry, ensure_ascii=False) + "\n")
        stream.flush()

    return sink


def configure_logging(level: str = "INFO", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Enable teg_ota's logs with one sink on ``stream`` (stderr), text or JSON lines."""
    stream = stream or sys.stderr
    logger.remove()
    logger.enable("teg_ota")
    if fmt == "json":
        logger.add(_json_sink(stream), level=level)
    else:
        logger.add(
            stream,
            level=level,
            format="{time:YYYY-MM-DD HH:mm:ss.SSS} {level:<7} {name}: {message}",
            backtrace=False,
            diagnose=False,
        )
    handler = InterceptHandler()
    for name in _ROUTED_LOGGERS:
        std = logging.getLogger(name)
        std.handlers = [handler]
        std.propagate = False
        std.setLevel(logging.DEBUG if level in ("TRACE", "DEBUG") else logging.INFO)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    logging.getLogger("docker").setLevel(logging.WARNING)
