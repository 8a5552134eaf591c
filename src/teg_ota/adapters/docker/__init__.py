"""The ``ContainerRuntime`` adapter on the Docker Engine API, split by job.

``client`` keeps the connection and translates its errors, ``inspection`` reads what the
engine answers (pure), ``validation`` checks names and labels before they reach the engine,
``archive`` reads ``docker save`` archives, ``build`` makes images, ``waiting`` follows the
event stream, and ``runtime`` composes them into :class:`DockerRuntime`.
"""

from teg_ota.adapters.docker.runtime import DockerRuntime, DockerRuntimeSettings

__all__ = ["DockerRuntime", "DockerRuntimeSettings"]
