"""The ``ContainerRuntime`` adapter on the Docker Engine API, split by job.

``client`` keeps the connection and translates its errors, ``inspection`` reads what the
engine answers (pure), ``validation`` checks names and labels before they reach the engine,
``archive`` reads ``docker save`` archives, ``build`` makes images, ``waiting`` follows the
event stream, ``next_container`` creates, starts and names the next controller container
(the swap), and ``runtime`` composes them into :class:`DockerRuntime`.
"""

from teg_ota.adapters.docker.runtime import DockerRuntime
from teg_ota.adapters.docker.runtime_settings import DockerRuntimeSettings

__all__ = ["DockerRuntime", "DockerRuntimeSettings"]
