#!/usr/bin/env bash
# Makes this machine able to run the integration tests, idempotently:
#   1. apt-installs what is missing (docker.io, mosquitto, busybox-static, git, docker-compose,
#      faketime, util-linux, procps, python3-venv) -- as root only; otherwise it says what to install and exits 1;
#   2. starts dockerd without bridge/iptables (no registry, no bridge network on these machines,
#      see docs of the test infrastructure) unless `docker info` already answers;
#   3. builds the local test base images (scripts/build-test-images.sh).
# A second run with everything in place is a fast no-op.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DOCKERD_LOG="${TEG_OTA_DOCKERD_LOG:-/var/log/teg-ota-dockerd.log}"
DOCKERD_WAIT_SECONDS="${TEG_OTA_DOCKERD_WAIT_SECONDS:-60}"

log() { printf '[ensure-infra] %s\n' "$*" >&2; }
die() { printf '[ensure-infra] ERROR: %s\n' "$*" >&2; exit 1; }

# pid_alive PID: a running (not zombie) process; kill -0 succeeds on zombies, which a killed
# dockerd becomes when nothing reaps it.
pid_alive() {
    local state
    state="$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null || true)"
    [[ -n "$state" && "$state" != "Z" && "$state" != "X" ]]
}

# show_log_since OFFSET: what dockerd wrote to its log since this script started it.
show_log_since() {
    log "dockerd log ($DOCKERD_LOG), last lines of this start:"
    tail -c "+$(($1 + 1))" "$DOCKERD_LOG" 2>/dev/null | tail -n 40 >&2 || true
}

pkg_installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

# --- 1. packages ----------------------------------------------------------------------------
missing=()
# faketime: libfaketime, to run a gateway under test with its clock off (tests/integration/tb_clock.py)
# util-linux: flock, copied into the test image (update-lock tests); procps: ps, which `docker top` runs
for pkg in docker.io mosquitto busybox-static git docker-compose faketime util-linux procps; do
    pkg_installed "$pkg" || missing+=("$pkg")
done
if ! python3 -m venv --help >/dev/null 2>&1; then
    missing+=(python3-venv)
fi

if ((${#missing[@]} > 0)); then
    if [[ "$(id -u)" -ne 0 ]]; then
        die "missing packages: ${missing[*]} -- install them with: sudo apt-get install -y ${missing[*]} (or run this script as root)"
    fi
    log "installing missing packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# --- 2. docker engine -----------------------------------------------------------------------
if docker info >/dev/null 2>&1; then
    log "docker engine already answers"
else
    if [[ "$(id -u)" -ne 0 ]]; then
        die "no Docker engine answers and only root can start one here: run this script as root (sudo)"
    fi
    # A dockerd killed without cleanup leaves its pid file, which makes the next one refuse to start.
    for pidfile in /var/run/docker.pid /run/docker/containerd/containerd.pid; do
        if [[ -f "$pidfile" ]] && ! pid_alive "$(cat "$pidfile" 2>/dev/null || echo 0)"; then
            log "removing stale $pidfile"
            rm -f "$pidfile"
        fi
    done
    mkdir -p "$(dirname "$DOCKERD_LOG")"
    log_offset="$(stat -c %s "$DOCKERD_LOG" 2>/dev/null || echo 0)"
    log "starting dockerd (log: $DOCKERD_LOG)"
    # setsid + nohup: the daemon outlives this script and the shell/session that ran it.
    setsid nohup dockerd --bridge=none --iptables=false --ip6tables=false \
        >>"$DOCKERD_LOG" 2>&1 </dev/null &
    dockerd_pid=$!
    deadline=$((SECONDS + DOCKERD_WAIT_SECONDS))
    until docker info >/dev/null 2>&1; do
        if ! pid_alive "$dockerd_pid"; then
            show_log_since "$log_offset"
            die "dockerd exited before answering 'docker info'"
        fi
        if ((SECONDS >= deadline)); then
            show_log_since "$log_offset"
            die "dockerd (pid $dockerd_pid) did not answer 'docker info' within ${DOCKERD_WAIT_SECONDS}s"
        fi
        sleep 0.5
    done
    log "dockerd is up (pid $dockerd_pid)"
fi

# --- 3. local test images -------------------------------------------------------------------
# shellcheck source=scripts/build-test-images.sh
source "$ROOT/scripts/build-test-images.sh"
build_test_images
