#!/usr/bin/env bash
# Makes sure a Docker daemon answers on /var/run/docker.sock: installs Debian's docker.io and
# busybox-static when missing, starts dockerd in the background when `docker info` fails, and
# waits for it. Idempotent: does nothing when a daemon already answers. Used by scripts/test.sh
# and by tests/container.rs (which needs a real daemon and an image built from busybox-static).
set -euo pipefail

log() { printf '==> %s\n' "$*" >&2; }

packages=()
command -v dockerd >/dev/null 2>&1 || packages+=(docker.io)
dpkg -s busybox-static >/dev/null 2>&1 || packages+=(busybox-static)
if [ "${#packages[@]}" -gt 0 ]; then
    log "installing ${packages[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
fi

if docker info >/dev/null 2>&1; then
    exit 0
fi

log "starting dockerd in the background (log: /var/log/edgeguard-test-dockerd.log)"
# setsid: the daemon outlives this script and is not in its process group.
setsid dockerd >>/var/log/edgeguard-test-dockerd.log 2>&1 < /dev/null &
for _ in $(seq 1 60); do
    if docker info >/dev/null 2>&1; then
        exit 0
    fi
    sleep 0.5
done
echo "error: dockerd did not answer within 30 s; see /var/log/edgeguard-test-dockerd.log" >&2
exit 1
