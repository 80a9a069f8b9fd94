#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for N seconds each (default 180), one after the other,
# and prints a summary line per target. Not part of scripts/test.sh: CI stays short.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
#   SECONDS  run time per target (default 180)
#   TARGET   only these targets (default: all, from `cargo fuzz list`)
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). The committed seeds in
# fuzz/corpus/<target>/ are read only; what the fuzzer finds goes to fuzz/corpus-work/<target>/
# (ignored by git), so runs build on each other. Crashes are written to fuzz/artifacts/<target>/;
# the other targets still run and the script exits non-zero. `-jobs=1` makes libFuzzer run the
# target in one child process (its log goes to fuzz/fuzz-0.log); each target's whole output is
# kept in fuzz/fuzz-<target>.log (ignored by git).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${1:-180}"
shift || true
if ! [[ "$seconds" =~ ^[0-9]+$ ]]; then
    echo "usage: $0 [SECONDS] [TARGET...]" >&2
    exit 2
fi
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

# Safe Rust parsers: panics and overflow checks (debug assertions, on by default) are what can
# fail, so AddressSanitizer is left out; it would roughly halve the executions per second.
build_flags=(--sanitizer none)

cargo +nightly fuzz build "${build_flags[@]}"

summary=()
status=0
for t in "${targets[@]}"; do
    work="corpus-work/$t"
    mkdir -p "$work" "corpus/$t"
    log="fuzz-$t.log"
    echo "==> $t for ${seconds}s" >&2
    if cargo +nightly fuzz run "${build_flags[@]}" "$t" "$work" "corpus/$t" -- \
        -max_total_time="$seconds" -jobs=1 -workers=1 -print_final_stats=1 >"$log" 2>&1; then
        result=clean
    else
        result="CRASH (see fuzz/artifacts/$t, fuzz/$log)"
        status=1
    fi
    execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)"
    corpus="$(find "$work" "corpus/$t" -type f | wc -l)"
    summary+=("$(printf '%-24s %6ss %12s execs %6s corpus files  %s' \
        "$t" "$seconds" "${execs:-?}" "$corpus" "$result")")
done
printf '%s\n' "${summary[@]}"
exit "$status"
