#!/usr/bin/env bash
# Fills tests/images/mosquitto/rootfs/ (gitignored) for the FROM-scratch Mosquitto image:
# the host's /usr/sbin/mosquitto, every library `ldd` lists (same paths, dynamic loader included),
# a root entry in /etc/passwd + /etc/group, and the default /mosquitto/config/mosquitto.conf.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOTFS="$HERE/rootfs"
BIN=/usr/sbin/mosquitto

[[ -x "$BIN" ]] || { echo "prepare.sh: $BIN not found: apt-get install -y mosquitto" >&2; exit 1; }

rm -rf "$ROOTFS"
mkdir -p "$ROOTFS/etc" "$ROOTFS/mosquitto/config" "$ROOTFS/mosquitto/data" "$ROOTFS/tmp"
chmod 1777 "$ROOTFS/tmp"

copy_file() { # keep the path; copy the target of a symlink under the link's own name
    mkdir -p "$ROOTFS$(dirname "$1")"
    cp -L "$1" "$ROOTFS$1"
}

copy_file "$BIN"
# ldd lines: "libx.so => /lib/.../libx.so (0x..)" or "/lib64/ld-linux-x86-64.so.2 (0x..)";
# linux-vdso has no file.
ldd "$BIN" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }' | sort -u |
    while read -r lib; do
        copy_file "$lib"
    done

printf 'root:x:0:0:root:/root:/bin/sh\n' >"$ROOTFS/etc/passwd"
printf 'root:x:0:\n' >"$ROOTFS/etc/group"
install -m 0644 "$HERE/mosquitto.conf" "$ROOTFS/mosquitto/config/mosquitto.conf"
