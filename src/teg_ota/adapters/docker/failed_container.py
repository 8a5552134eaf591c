"""A crashed or failed controller container: its last output logged, the container kept.

When a stopped controller container makes way for the next one, which happens once that
next one has started (:mod:`.next_container`: none of this is in the downtime), a failed
one has its last lines (``crash_log_lines``) copied into teg-ota's log and is kept,
renamed ``<name>-failed``, so that ``docker logs
<name>-failed`` still shows what happened; the previous kept one is removed then, and the
kept one goes at the next successful update (which prunes stopped containers:
:meth:`DockerRuntime.prune_stopped_containers` removes it by name, whatever its labels).
Under its new name it never counts as the controller (that is found by name), and its
restart policy is set to ``no`` first, so that no engine restart can start it again.

Which stopped container is *failed*:

* one this process stopped (a swap, a rollback, a stop, a restart) only when its health
  check said ``unhealthy`` or still ``starting`` then (a health gate that failed): a healthy
  controller killed after the stop grace did not fail;
* any other: when it was killed for lack of memory or exited with a code other than 0 and
  143 (128 + SIGTERM: someone stopped it: another teg-ota process, ``docker stop``).

With ``crash_log_lines`` 0 none of this happens: a stopped container is just removed.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors
from loguru import logger

from teg_ota.adapters.docker import inspection, waiting
from teg_ota.adapters.docker.client import explanation
from teg_ota.domain.core.output_tail import clean_lines
from teg_ota.domain.model.controller import Health

FAILED_SUFFIX = "-failed"
_CLEAN_EXIT_CODES = frozenset({0, 143})
_FAILING_HEALTH = frozenset({Health.UNHEALTHY, Health.STARTING})


@dataclass(frozen=True, slots=True)
class Stopped:
    """The container this process last stopped, and whether it was failing then."""

    container_id: str
    failing: bool


def failed_name(name: str) -> str:
    return name + FAILED_SUFFIX


def stopping(attrs: Mapping[str, Any]) -> Stopped | None:
    """What to remember of a running container about to be stopped on purpose."""
    container_id = attrs.get("Id")
    if not isinstance(container_id, str):
        return None
    health = inspection.health_of(attrs.get("State") or {})
    return Stopped(container_id, health in _FAILING_HEALTH)


def is_failure(attrs: Mapping[str, Any], stopped: Stopped | None) -> bool:
    """Whether the stopped container ``attrs`` crashed or failed (see the module's text)."""
    if stopped is not None and stopped.container_id == attrs.get("Id"):
        return stopped.failing
    state = attrs.get("State") or {}
    if state.get("OOMKilled") is True:
        return True
    code = state.get("ExitCode")
    return isinstance(code, int) and code not in _CLEAN_EXIT_CODES


def last_lines(client: docker.DockerClient, container: str, lines: int) -> tuple[str, ...]:
    """The last ``lines`` lines the container printed (stdout and stderr), cleaned of
    control characters; empty when it is gone or its log driver cannot be read back."""
    if lines <= 0:
        return ()
    try:
        raw = client.api.logs(container, stdout=True, stderr=True, tail=lines, timestamps=False)
    except docker.errors.NotFound:
        return ()
    except docker.errors.APIError as exc:  # "configured logging driver does not support reading"
        logger.debug("cannot read the output of {}: {}", container, explanation(exc))
        return ()
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
    return clean_lines(text)[-lines:]


def describe(attrs: Mapping[str, Any]) -> str:
    state = attrs.get("State") or {}
    if state.get("OOMKilled") is True:
        return "was killed for lack of memory"
    if inspection.health_of(state) is Health.UNHEALTHY:
        return "was unhealthy"
    return f"exited with code {state.get('ExitCode')}"


def make_way(
    client: docker.DockerClient,
    attrs: Mapping[str, Any],
    name: str,
    lines: int,
    stopped: Stopped | None,
    starting: str,
) -> None:
    """Remove the stopped container ``attrs`` (named ``name``) now that ``starting`` runs in
    its place, or, when it failed, log its last ``lines`` lines and keep it as
    ``<name>-failed``."""
    container_id = str(attrs.get("Id") or name)
    if lines > 0 and is_failure(attrs, stopped):
        output = last_lines(client, container_id, lines)
        image = (attrs.get("Config") or {}).get("Image") or "?"
        if output:
            shown = "\n".join(f"  | {line}" for line in output)
            logger.warning(
                "controller container {} ({}) {}; its last {} line(s) of output:\n{}",
                name,
                image,
                describe(attrs),
                len(output),
                shown,
            )
        else:
            logger.warning(
                "controller container {} ({}) {}; it printed nothing (or its log driver "
                "cannot be read back)",
                name,
                image,
                describe(attrs),
            )
        if _keep(client, attrs, container_id, name):
            return
    logger.info("removing stopped container {}: {} runs in its place", name, starting)
    with suppress(docker.errors.NotFound):
        client.api.remove_container(container_id)


def _keep(
    client: docker.DockerClient, attrs: Mapping[str, Any], container_id: str, name: str
) -> bool:
    kept = failed_name(name)
    try:
        with suppress(docker.errors.NotFound):
            client.api.remove_container(kept, force=True)
        policy = ((attrs.get("HostConfig") or {}).get("RestartPolicy") or {}).get("Name")
        if policy not in (None, "", "no"):
            client.api.update_container(container_id, restart_policy={"Name": "no"})
        client.api.rename(container_id, kept)
    except docker.errors.APIError as exc:
        logger.warning("could not keep the failed {} as {}: {}", name, kept, explanation(exc))
        return False
    logger.info(
        "kept the failed controller container as {} (docker logs {}) until the next "
        "successful update",
        kept,
        kept,
    )
    return True


def remove_kept(client: docker.DockerClient, name: str) -> int:
    """Remove the kept ``<name>-failed`` (after a success); 1 when there was one."""
    kept = failed_name(name)
    attrs = waiting.inspect_container(client, kept)
    if attrs is None or inspection.is_running(attrs):
        return 0
    try:
        client.api.remove_container(kept)
    except docker.errors.NotFound:
        return 0
    logger.info("removed the failed controller container {} kept since the last failure", kept)
    return 1
