"""DockerRuntime survives the engine going away and coming back (no mocks).

The test starts a second, private dockerd on its own socket, data root and exec root, so the
shared engine that other tests use is never disturbed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import docker
import pytest
from harness import in_ci

from teg_ota.adapters.docker import DockerRuntime, DockerRuntimeSettings
from teg_ota.ports.container_runtime import ControllerExit, ControllerState, RuntimeUnavailable


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


def _dead_or_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


@pytest.mark.timeout(180)
def test_same_runtime_object_survives_the_engine_going_away_and_back() -> None:
    if shutil.which("dockerd") is None:
        reason = "the dockerd binary is not installed (apt-get install docker.io)"
        if in_ci():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    uid = uuid.uuid4().hex[:12]
    daemon = PrivateDockerd(Path(tempfile.mkdtemp(prefix="teg-dd-", dir="/tmp")), uid)
    runtime = DockerRuntime(
        DockerRuntimeSettings(
            container_name=f"teg-test-{uid}",
            image_prefix=f"teg-test-{uid}-",
            privileged=False,
            base_url=daemon.base_url,
        )
    )
    try:
        # Down from the start: no socket at all.
        with pytest.raises(RuntimeUnavailable, match="container engine unavailable"):
            runtime.controller_state()
        with pytest.raises(RuntimeUnavailable):
            runtime.wait_for_exit(1)

        daemon.start()
        assert runtime.controller_state() == ControllerState(exists=False)
        assert runtime.free_disk_bytes() > 0
        assert runtime.list_controller_images() == []

        # Restarted between two calls: the cached client's pooled connection is dead.
        daemon.kill()
        daemon.start()
        assert runtime.controller_state() == ControllerState(exists=False)

        # Killed: the socket file is still there, nobody listens.
        daemon.kill()
        started = time.monotonic()
        with pytest.raises(RuntimeUnavailable, match=r"unreachable|unavailable"):
            runtime.controller_state()
        with pytest.raises(RuntimeUnavailable):
            runtime.prune_stopped_containers()
        with pytest.raises(RuntimeUnavailable):
            runtime.stop_controller(1)
        assert time.monotonic() - started < 10

        # Back again: the very same object answers.
        daemon.start()
        assert runtime.controller_state() == ControllerState(exists=False)
        assert runtime.wait_for_exit(0.5) == ControllerExit(exit_code=None)
    finally:
        daemon.stop()
        daemon.remove()
