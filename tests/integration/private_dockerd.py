"""A second, private dockerd for tests that restart or kill the engine (no fixtures here).

It runs on its own socket, data root, exec root and containerd namespace, so the shared
engine that other tests use is never disturbed. Nothing can be pulled here: images a test
needs in it are copied from the shared engine (:func:`copy_image`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import docker
import pytest
from harness import in_ci


def require_dockerd() -> None:
    """Skip (fail when CI=true/1) when the dockerd binary is missing."""
    if shutil.which("dockerd") is None:
        reason = "the dockerd binary is not installed (apt-get install docker.io)"
        if in_ci():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


class PrivateDockerd:
    """A second dockerd on its own socket, data root, exec root and containerd namespace."""

    def __init__(self, base: Path, uid: str) -> None:
        self.base = base
        self.uid = uid
        self.socket = base / "docker.sock"
        self.log = base / "dockerd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout_s: float = 45) -> None:
        cmd = [
            "dockerd",
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            "--host",
            self.base_url,
            "--data-root",
            str(self.base / "root"),
            "--exec-root",
            str(self.base / "exec"),
            "--pidfile",
            str(self.base / "docker.pid"),
            "--containerd-namespace",
            f"teg-test-{self.uid}",
            "--containerd-plugins-namespace",
            f"teg-test-{self.uid}-plugins",
        ]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + timeout_s
        while not self.answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-3000:]
                pytest.fail(f"private dockerd did not come up:\n{tail}", pytrace=False)
            time.sleep(0.1)

    def answers(self) -> bool:
        """Ping with a fresh low-level client (fixed API version: no negotiation)."""
        if not self.socket.exists():
            return False
        client = docker.APIClient(base_url=self.base_url, version="1.41", timeout=2)
        try:
            return bool(client.ping())
        except Exception:
            return False
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL, the way a crash (or the OOM killer) takes the daemon away."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=20)
        self._reap_containerd()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)
        self._reap_containerd()

    def _containerd_pid(self) -> int | None:
        """The managed containerd's pid, if that process is ours (cmdline names our base)."""
        pid_file = self.base / "exec" / "containerd" / "containerd.pid"
        try:
            pid = int(pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if str(self.base).encode() in cmdline else None

    def _reap_containerd(self) -> None:
        """Make sure the managed containerd is gone and forget its pid file.

        It dies with dockerd (parent-death signal), but on this machine PID 1 does not reap
        orphans: it stays a zombie, and the next dockerd, seeing its pid "alive" in the pid
        file, waits for it to answer instead of starting a new one ("timeout waiting for
        containerd to start"). A real init (systemd on the Pi) reaps it.
        """
        pid = self._containerd_pid()
        if pid is not None:
            deadline = time.monotonic() + 10
            while not _dead_or_zombie(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if not _dead_or_zombie(pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        (self.base / "exec" / "containerd" / "containerd.pid").unlink(missing_ok=True)

    def remove(self) -> None:
        # overlay2 bind-mounts its home over itself; unmount whatever is left under base.
        with open("/proc/self/mountinfo") as mountinfo:
            points = [line.split()[4] for line in mountinfo]
        for point in sorted((p for p in points if p.startswith(str(self.base))), reverse=True):
            subprocess.run(["umount", "-l", point], check=False, capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)

    def restart(self, timeout_s: float = 45) -> None:
        """SIGTERM, then start again on the same socket and data root (containers it ran
        are stopped by the daemon on the way down, as on a real ``systemctl restart``)."""
        self.stop()
        self.start(timeout_s)

    def client(self, timeout: int = 60) -> docker.DockerClient:
        """A fresh client for this engine (one made before a restart holds dead sockets)."""
        return docker.DockerClient(base_url=self.base_url, version="1.41", timeout=timeout)


def copy_image(source: docker.DockerClient, target: docker.DockerClient, tag: str) -> None:
    """``docker save`` from ``source`` piped into ``docker load`` of ``target``."""
    data = b"".join(source.api.get_image(tag))
    target.images.load(data)
    target.images.get(tag)  # raises ImageNotFound if the load did not tag it


def _dead_or_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")
