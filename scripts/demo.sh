#!/usr/bin/env bash
# THE main job: `sudo ./scripts/demo.sh` (or as root without sudo).
# Prepares the machine (packages, dockerd, the local busybox base image) and the venv, then
# runs scripts/demo.py: a local Mosquitto, a sample controller Git repository with tags,
# `teg-ota run`, and a scripted ThingsBoard stand-in that assigns v1.1 (updated) and then
# v2.0-broken (rolled back), printing the timeline. Exit status 0 when all of it happened.
# Extra arguments go to demo.py (`--keep` keeps its temporary directory).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash "$ROOT/scripts/ensure-infra.sh"

bash "$ROOT/scripts/ensure-venv.sh"

exec .venv/bin/python scripts/demo.py "$@"
