#!/usr/bin/env bash
# The test command. On a fresh Debian machine with a Rust toolchain it installs what the tests
# need, then runs the format check, clippy with warnings as errors, and every test.
#
# Needs ../shared/reference (the published schemas and twin defaults) beside the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

# Toolchain components.
for component in rustfmt clippy; do
    if ! rustup component list --installed 2>/dev/null | grep -q "^${component}"; then
        log "installing rustup component ${component}"
        rustup component add "${component}"
    fi
done

# The collectors' tests use the real kernel (netlink, AF_PACKET, network namespaces, firewall).
if [ "$(id -u)" != 0 ]; then
    echo "error: the tests need root (they open kernel sockets and create network namespaces)" >&2
    exit 1
fi

# Debian packages the tests use: nft/iptables for the firewall collector, ip for network
# namespaces, unshare for the process collector's fallback test, faketime for clock steps.
packages=()
command -v nft >/dev/null 2>&1 || packages+=(nftables)
command -v iptables-save >/dev/null 2>&1 || packages+=(iptables)
command -v ip >/dev/null 2>&1 || packages+=(iproute2)
command -v unshare >/dev/null 2>&1 || packages+=(util-linux)
# libfaketime steps the agent's wall clock in tests/agent_edgehub.rs.
command -v faketime >/dev/null 2>&1 || packages+=(faketime)
# systemd-journal-remote writes real journal files for the login collector's journal tests
# (src/collectors/login/tests/journal.rs); journalctl (systemd) checks them.
[ -x /lib/systemd/systemd-journal-remote ] || packages+=(systemd-journal-remote)
command -v journalctl >/dev/null 2>&1 || packages+=(systemd)
# The reference xz, lz4 and zstd tools encode the compressed journal fields those tests decode
# (this systemd writes only ZSTD; fuzz/make_seeds.py uses lz4 and zstd too).
command -v xz >/dev/null 2>&1 || packages+=(xz-utils)
command -v lz4 >/dev/null 2>&1 || packages+=(lz4)
command -v zstd >/dev/null 2>&1 || packages+=(zstd)
# The software inventory's rpm tests (src/collectors/inventory/tests/): rpmbuild and rpm write
# real rpm sqlite databases; the sqlite3 shell writes the SQLite reader's test files; Berkeley DB's
# db5.3_load writes rpm BerkeleyDB (`Packages`) files, db5.3_dump and db5.3_stat check them.
command -v rpmbuild >/dev/null 2>&1 || packages+=(rpm)
command -v sqlite3 >/dev/null 2>&1 || packages+=(sqlite3)
command -v db5.3_load >/dev/null 2>&1 || packages+=(db5.3-util)
# tests/detection_rules.rs drives the download and upload rules with a real curl.
command -v curl >/dev/null 2>&1 || packages+=(curl)
if [ "${#packages[@]}" -gt 0 ]; then
    log "installing ${packages[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}"
fi

# The process collector reads the kernel's exec tracepoint through tracefs, which systemd mounts
# on ordinary hosts; mount it where this machine has not (as systemd's sys-kernel-tracing.mount).
if [ ! -e /sys/kernel/tracing/events ]; then
    log "mounting tracefs at /sys/kernel/tracing"
    mount -t tracefs nodev /sys/kernel/tracing
fi

# The container tests (tests/container.rs) need a Docker daemon and busybox-static: Debian's
# docker.io, started in the background when `docker info` fails (idempotent).
bash scripts/dockerd-up.sh

if [ ! -d ../shared/reference/asc-security-schemas ]; then
    echo "error: ../shared/reference/asc-security-schemas is missing (the tests validate against it)" >&2
    exit 1
fi

# iotedgedev (PyPI) expands and checks the deployment template (tests/deployment.rs), in a venv of
# its own; its first run would ask about telemetry, so its settings are written beforehand.
tools="${EDGEGUARD_TEST_TOOLS:-/var/cache/edgeguard-test}"
if [ ! -x "$tools/iotedgedev/bin/iotedgedev" ]; then
    log "installing iotedgedev into $tools/iotedgedev"
    rm -rf "$tools/iotedgedev"
    python3 -m venv "$tools/iotedgedev"
    "$tools/iotedgedev/bin/pip" install -q iotedgedev
fi
export EDGEGUARD_IOTEDGEDEV="$tools/iotedgedev/bin/iotedgedev"

# The module image, built as users build it (static binary, FROM scratch), for the end-to-end
# test that runs it as edgeAgent would (tests/module_container.rs).
log "building the amd64 module image"
export EDGEGUARD_TEST_IMAGE=edgeguard:test-amd64
bash scripts/build-image.sh amd64 "$EDGEGUARD_TEST_IMAGE" >/dev/null

# armv7: the static build under qemu-user (version, config check, snapshot), then on a real
# 32-bit ARM kernel under qemu-system-arm (the process connector, sock_diag and packet capture,
# which qemu-user cannot translate). About 35 s with the kernel cached, a minute without.
log "armv7: static build, qemu-user smoke test, ARM-kernel VM test"
arm32=$(bash scripts/build-static.sh arm32v7)
bash scripts/arm32-smoke.sh "$arm32"
bash scripts/arm32-vm-test.sh "$arm32"

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy (all targets, -D warnings)"
cargo clippy --all-targets --locked -- -D warnings

log "cargo test"
cargo test --locked --all-targets --no-fail-fast
log "cargo test --doc"
cargo test --locked --doc
