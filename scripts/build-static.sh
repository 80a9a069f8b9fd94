#!/usr/bin/env bash
# Builds the static release binary the module image ships, for one platform:
#
#   scripts/build-static.sh amd64|arm32v7|arm64v8
#
# stages a copy at dist/<arch>/edgeguard, where Dockerfile.<arch> takes it from (the Docker build
# context holds only dist/), and prints the staged path on stdout. Installs what the build needs
# when it is missing (the Rust target, Debian's cross linker). Static, so the image needs no libc:
# `FROM scratch` with the binary copied in.
#
#   amd64    x86_64-unknown-linux-musl (static by default; musl resolves the gateway host name
#            from /etc/hosts and DNS without NSS modules), its C parts (ring) compiled with the
#            host's gcc. 0.9 MB smaller than the glibc crt-static build, which it replaced on
#            2026-12-04 for issue 19's 8 MB image; the storms showed no CPU difference
#            (docs/benchmarks.md, "amd64 on musl")
#   arm32v7  armv7-unknown-linux-gnueabihf, crt-static (the musleabihf target could not be
#            downloaded here), linked with Debian's arm-linux-gnueabihf-gcc
#   arm64v8  aarch64-unknown-linux-musl (static by default), C parts (ring) compiled and linked
#            with Debian's aarch64-linux-gnu-gcc
#
# CARGO_TARGET_DIR is honoured.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

arch="${1:-}"
case "$arch" in
    amd64) triple=x86_64-unknown-linux-musl; cross_gcc=""; package="" ;;
    arm32v7) triple=armv7-unknown-linux-gnueabihf; cross_gcc=arm-linux-gnueabihf-gcc; package=gcc-arm-linux-gnueabihf ;;
    arm64v8) triple=aarch64-unknown-linux-musl; cross_gcc=aarch64-linux-gnu-gcc; package=gcc-aarch64-linux-gnu ;;
    *)
        echo "usage: $0 amd64|arm32v7|arm64v8" >&2
        exit 2
        ;;
esac

if ! rustup target list --installed 2>/dev/null | grep -qx "$triple"; then
    log "installing the Rust target $triple"
    rustup target add "$triple" >&2
fi
if [ -n "$cross_gcc" ] && ! command -v "$cross_gcc" >/dev/null 2>&1; then
    log "installing $package"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >&2
fi

# Cargo's per-target variables: TARGET in upper case with '-' as '_'.
env_triple=$(printf '%s' "$triple" | tr 'a-z-' 'A-Z_')
export "CARGO_TARGET_${env_triple}_RUSTFLAGS=-C target-feature=+crt-static"
# The cc crate (ring's C and assembly) looks for CC_<triple with underscores>; for the musl
# target on x86_64 it would look for x86_64-linux-musl-gcc, which Debian does not have (ring's C
# code needs no libc headers, so the host's gcc serves).
cc_var="CC_$(printf '%s' "$triple" | tr '-' '_')"
if [ -n "$cross_gcc" ]; then
    export "CARGO_TARGET_${env_triple}_LINKER=$cross_gcc"
    export "$cc_var=$cross_gcc"
elif [ "$triple" = x86_64-unknown-linux-musl ]; then
    export "$cc_var=gcc"
fi

log "building the static release binary for $arch ($triple)"
cargo build --release --locked --target "$triple" --bin edgeguard >&2

binary="${CARGO_TARGET_DIR:-target}/$triple/release/edgeguard"
if [ ! -x "$binary" ]; then
    echo "error: the build did not produce $binary" >&2
    exit 1
fi
# A dynamically linked binary would fail in the scratch image with a confusing "no such file".
if readelf --program-headers "$binary" | grep -q 'INTERP'; then
    echo "error: $binary is dynamically linked; the image needs a static binary" >&2
    exit 1
fi
staged="dist/$arch/edgeguard"
mkdir -p "dist/$arch"
cp "$binary" "$staged.tmp"
mv "$staged.tmp" "$staged"
printf "%s\n" "$(pwd)/$staged"
