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

if [ ! -d ../shared/reference/asc-security-schemas ]; then
    echo "error: ../shared/reference/asc-security-schemas is missing (the tests validate against it)" >&2
    exit 1
fi

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy (all targets, -D warnings)"
cargo clippy --all-targets --locked -- -D warnings

log "cargo test"
cargo test --locked --all-targets --no-fail-fast
log "cargo test --doc"
cargo test --locked --doc
