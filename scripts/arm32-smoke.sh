#!/usr/bin/env bash
# Quick check of the static armv7 build under qemu-user (qemu-arm-static), for CI:
#
#   scripts/arm32-smoke.sh [BINARY]
#
# BINARY defaults to a fresh `scripts/build-static.sh arm32v7` (which honours CARGO_TARGET_DIR).
# Checks, each one a line PASS/FAIL:
#   1. `edgeguard --version` prints "edgeguard X.Y.Z";
#   2. `edgeguard config check` exits 0 on a small valid twin and 1 on one with a bad key (and
#      names that key on stderr);
#   3. `edgeguard snapshot --sink stdout` prints JSON messages, one of them holding a
#      SystemInformation event whose OsArchitecture is 32-bit ARM.
# Exits non-zero if any check failed.
#
# What this does NOT prove: qemu-user translates system calls, not the netlink process
# connector or sock_diag, so the process and connection collectors cannot run here (the `run`
# mode falls back). scripts/arm32-vm-test.sh boots a real armhf kernel for those.
set -euo pipefail
# A BINARY given relative to the caller's directory must survive the cd below.
binary_arg="${1:+$(realpath -m -- "$1")}"
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

if [ "$(id -u)" != 0 ] && ! command -v qemu-arm-static >/dev/null 2>&1; then
    die "qemu-arm-static is missing and installing it needs root (apt-get install qemu-user-static)"
fi
if ! command -v qemu-arm-static >/dev/null 2>&1; then
    log "installing qemu-user-static (qemu-arm-static)"
    # `apt-get install` fails on a machine whose package lists were never fetched: update first.
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user-static >&2
fi
command -v python3 >/dev/null 2>&1 || die "python3 is needed to check the snapshot's JSON"

binary="$binary_arg"
if [ -z "$binary" ]; then
    binary=$(scripts/build-static.sh arm32v7)
fi
[ -x "$binary" ] || die "$binary is not an executable file"
# Running an x86 binary through qemu-arm would fail with a confusing message: say what is wrong.
if ! readelf -h "$binary" 2>/dev/null | grep -q 'Machine:.*ARM$'; then
    die "$binary is not a 32-bit ARM executable (readelf: $(readelf -h "$binary" 2>/dev/null | grep Machine: | tr -s ' '))"
fi

work=$(mktemp -d /tmp/edgeguard-arm32-smoke.XXXXXX)
trap 'rm -rf "$work"' EXIT

# A clean environment: an EDGEGUARD_* or IOTEDGE_* variable from the caller's shell would change
# what the agent does (a sink, a config, an edgeHub connection).
eg() {
    env -i PATH=/usr/bin:/bin HOME="$work" RUST_BACKTRACE=1 \
        qemu-arm-static "$binary" "$@"
}

failed=0
passed=0
pass() { printf 'PASS  %s\n' "$*"; passed=$((passed + 1)); }
fail() { printf 'FAIL  %s\n' "$*"; failed=$((failed + 1)); }

# 1. --version
if version=$(eg --version 2>"$work/version.err") && [[ "$version" =~ ^edgeguard\ [0-9]+\.[0-9]+\.[0-9]+ ]]; then
    pass "--version: $version"
else
    fail "--version printed '${version:-}' ($(head -c 300 "$work/version.err"))"
fi

# 2. config check: a valid twin (desired-properties form, each key wrapped or bare) and one
#    with a bad key.
cat >"$work/good.json" <<'EOF'
{"properties": {"desired": {"ms_iotn:urn_azureiot_Security_SecurityAgentConfiguration": {
  "highPriorityMessageFrequency": {"value": "PT2S"},
  "lowPriorityMessageFrequency": "PT3S",
  "eventPriorityProcessCreate": "High",
  "aggregationEnabledProcessCreate": {"value": false}
}}}}
EOF
cat >"$work/bad.json" <<'EOF'
{"ms_iotn:urn_azureiot_Security_SecurityAgentConfiguration": {
  "highPriorityMessageFrequency": "PT2S",
  "eventPriorityNoSuchEvent": "High"
}}
EOF
rc=0
eg config check "$work/good.json" >"$work/good.out" 2>"$work/good.err" || rc=$?
if [ "$rc" = 0 ] && grep -q '"highPriorityMessageFrequency"' "$work/good.out"; then
    pass "config check on a valid twin: exit 0, effective configuration printed"
else
    fail "config check on a valid twin: exit $rc (want 0); stderr: $(head -c 500 "$work/good.err")"
fi
rc=0
eg config check "$work/bad.json" >"$work/bad.out" 2>"$work/bad.err" || rc=$?
if [ "$rc" = 1 ] && grep -q 'eventPriorityNoSuchEvent' "$work/bad.err"; then
    pass "config check on a twin with a bad key: exit 1, the key named on stderr"
else
    fail "config check on a twin with a bad key: exit $rc (want 1); stderr: $(head -c 500 "$work/bad.err")"
fi

# 3. snapshot: every periodic collector once, messages on stdout. The state directory is a
#    fresh one so that the agent id is made (and written) under qemu-user too.
mkdir -p "$work/state"
rc=0
eg snapshot --sink stdout --state-dir "$work/state" >"$work/snapshot.jsonl" 2>"$work/snapshot.err" || rc=$?
if [ "$rc" != 0 ]; then
    fail "snapshot exited $rc; stderr: $(tail -c 800 "$work/snapshot.err")"
elif summary=$(python3 - "$work/snapshot.jsonl" <<'EOF'
import json, sys
messages, kinds, arch = 0, {}, None
for line in open(sys.argv[1]):
    if not line.strip():
        continue
    m = json.loads(line)  # a line that is not JSON fails the check
    messages += 1
    for e in m["Events"]:
        kinds[e["Name"]] = kinds.get(e["Name"], 0) + 1
        if e["Name"] == "SystemInformation" and e["Payload"]:
            arch = e["Payload"][0].get("OsArchitecture")
if messages == 0 or "SystemInformation" not in kinds:
    print(f"{messages} message(s), events {kinds}: no SystemInformation")
    sys.exit(1)
if not (arch or "").startswith("arm"):
    print(f"SystemInformation.OsArchitecture is {arch!r}, not 32-bit ARM")
    sys.exit(1)
print(f"{messages} message(s), OsArchitecture {arch}, events: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
EOF
); then
    pass "snapshot: $summary"
else
    fail "snapshot: ${summary:-unreadable output} (first bytes: $(head -c 300 "$work/snapshot.jsonl"))"
fi

printf '%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" = 0 ]
