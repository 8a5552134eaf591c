#!/usr/bin/env bash
# Builds the local base images the integration tests use (nothing can be pulled here):
#   teg-ota-test-busybox:latest    tests/images/busybox   (FROM scratch + Debian's static busybox)
#   teg-ota-test-mosquitto:latest  tests/images/mosquitto (FROM scratch + host mosquitto + its libs)
# An image is rebuilt only when its inputs changed: their sha256 is kept in the image label
# "teg-ota.test.inputs". Run it (`scripts/build-test-images.sh [--force]`) or source it and call
# `build_test_images [--force]` (scripts/ensure-infra.sh does).

_TEG_IMAGES_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TEG_BUSYBOX_IMAGE="teg-ota-test-busybox:latest"
TEG_MOSQUITTO_IMAGE="teg-ota-test-mosquitto:latest"

_img_log() { printf '[build-test-images] %s\n' "$*" >&2; }

# _inputs_hash FILE... : one hash over the content of the given files (dirs: their Dockerfile etc.)
_inputs_hash() {
    sha256sum "$@" | sha256sum | cut -c1-32
}

_image_label() {
    docker image inspect --format '{{ index .Config.Labels "teg-ota.test.inputs" }}' "$1" 2>/dev/null || true
}

# _build_if_changed TAG CONTEXT FORCE PREPARE_FN INPUT_FILE...
_build_if_changed() {
    local tag=$1 context=$2 force=$3 prepare=$4
    shift 4
    local missing_input=""
    for f in "$@"; do
        [[ -r "$f" ]] || missing_input="$f"
    done
    if [[ -n "$missing_input" ]]; then
        if docker image inspect "$tag" >/dev/null 2>&1; then
            _img_log "WARNING: $missing_input is missing, keeping the existing $tag"
            return 0
        fi
        _img_log "ERROR: cannot build $tag: $missing_input is missing (run scripts/ensure-infra.sh as root)"
        return 1
    fi
    local want
    want="$(_inputs_hash "$@")"
    if [[ "$force" != "--force" && "$(_image_label "$tag")" == "$want" ]]; then
        _img_log "$tag is up to date"
        return 0
    fi
    _img_log "building $tag"
    "$prepare" || return 1
    # The legacy builder (no buildx here) prints a deprecation notice: show output only on failure.
    local out
    if ! out="$(docker build --pull=false --label "teg-ota.test.inputs=$want" -t "$tag" "$context" 2>&1)"; then
        printf '%s\n' "$out" >&2
        _img_log "ERROR: docker build of $tag failed"
        return 1
    fi
}

_prepare_busybox() {
    local context="$_TEG_IMAGES_ROOT/tests/images/busybox"
    install -m 0755 /bin/busybox "$context/busybox"
    # util-linux's flock (essential on Debian) and the libraries it links, at their paths.
    rm -rf "$context/rootfs"
    install -D -m 0755 "$(command -v flock)" "$context/rootfs/usr/local/bin/flock"
    local lib
    for lib in $(ldd "$(command -v flock)" | grep -o '/[^ ]*'); do
        install -D -m 0755 "$(readlink -f "$lib")" "$context/rootfs$lib"
    done
}

_prepare_mosquitto() {
    bash "$_TEG_IMAGES_ROOT/tests/images/mosquitto/prepare.sh"
}

build_test_images() {
    local force=${1:-}
    local images="$_TEG_IMAGES_ROOT/tests/images"
    _build_if_changed "$TEG_BUSYBOX_IMAGE" "$images/busybox" "$force" _prepare_busybox \
        "$images/busybox/Dockerfile" /bin/busybox "$(command -v flock)" || return 1
    _build_if_changed "$TEG_MOSQUITTO_IMAGE" "$images/mosquitto" "$force" _prepare_mosquitto \
        "$images/mosquitto/Dockerfile" "$images/mosquitto/prepare.sh" \
        "$images/mosquitto/mosquitto.conf" /usr/sbin/mosquitto || return 1
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    build_test_images "${1:-}"
fi
