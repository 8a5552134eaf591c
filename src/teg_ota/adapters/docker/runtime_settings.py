"""How the controller container is run, and where the engine is: the adapter's settings.

Kept apart from :mod:`.runtime` so that the parts that create containers
(:mod:`.next_container`) read the same settings without importing the runtime.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class DockerRuntimeSettings:
    """How the controller container is run, and where the engine is.

    ``restart_policy`` defaults to ``"no"`` on purpose: teg-ota's watchdog owns restarts, so
    that restart backoff, crash-loop detection and rollback to the previous version are ours
    and observable (``wait_for_exit`` sees every exit). A Docker restart policy would restart
    the container behind the watchdog's back and hide crash loops from it.

    ``privileged`` defaults to ``True`` because the controller needs the Raspberry Pi's
    hardware; machines whose capability bounding set forbids it (CI) set it to ``False``.
    """

    container_name: str = "teg_controller"
    image_prefix: str = "teg-controller-"
    network_mode: str = "host"
    privileged: bool = True
    restart_policy: str = "no"
    environment: Mapping[str, str] = field(default_factory=dict)
    mounts: Sequence[str] = ()
    """Bind mounts in Docker's ``"src:dst[:ro]"`` form."""
    build_timeout_s: float = 1800
    """Upper bound for a whole image build (or load); it is cancelled when exceeded."""
    base_url: str | None = None
    """Engine address (``unix:///var/run/docker.sock``); ``None`` = ``docker.from_env()``."""
    prune_label: str | None = None
    """Only prune stopped containers carrying this label (``key`` or ``key=value``);
    ``None`` prunes every stopped container, as the seed's gateway did."""
    build_context: str | None = None
    """Relative to the staged work tree; ``None``: ``docker`` when it has
    ``docker/<dockerfile>``, else the work tree itself (the original gateway's layout first;
    :mod:`.build_context`)."""
    dockerfile: str = "Dockerfile"
    """Relative to the build context."""
    build_args: Mapping[str, str] = field(default_factory=dict, repr=False)
    """``--build-arg``s of every build; never logged (they may hold secrets)."""
    log_driver: str = "json-file"
    log_options: Mapping[str, str] = field(
        default_factory=lambda: {"max-size": "10m", "max-file": "5"}
    )
    """Applied to every container created (an SD card must never fill with logs)."""
    crash_log_lines: int = 50
    """Last lines of a failed container copied into teg-ota's log before it makes way for
    the next one, which is kept as ``<name>-failed`` until the next success (0: neither;
    :mod:`.failed_container`)."""
    stop_timeout_s: float | None = None
    """The container's own ``StopTimeout``: the grace a plain ``docker stop`` or the engine's
    shutdown gives it (``None``: the engine's 10 s). teg-ota's own stops pass theirs."""
    tool_mounts: Sequence[str] = ()
    """Read-only mounts of host programs (the Pi tools), left out for an image whose path is
    a link to another program (:mod:`.image_links`)."""
    create_dirs: Sequence[str] = ()
    """Host directories created (mode 0755) when missing before a container is created
    (the sources of the default mounts: :mod:`.host_dirs`)."""
