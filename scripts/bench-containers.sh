#!/usr/bin/env bash
# Container watcher cost and enrichment rate (docs/benchmarks.md, "Container watcher cost").
#
# Runs `edgeguard run` twice, with containerCollectionEnabled true and false, and each time starts
# N containers (default 50), execs a shell in each, then removes them all. Reports the agent's CPU
# time and RSS over the churn (the difference between the two runs is the container part's
# cost), and the share of ProcessCreate records from those containers that carry the container's
# name and image. Needs root; starts dockerd if needed (scripts/dockerd-up.sh).
#
#   CARGO_TARGET_DIR=... cargo build --release --bin edgeguard
#   scripts/bench-containers.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."

N="${1:-50}"
IMAGE=edgeguard-test-busybox:1
TARGET="${CARGO_TARGET_DIR:-target}"
BIN="${EDGEGUARD_BIN:-$TARGET/release/edgeguard}"
[ -x "$BIN" ] || { echo "error: $BIN not built (cargo build --release --bin edgeguard)" >&2; exit 1; }

bash scripts/dockerd-up.sh
work="$(mktemp -d)"
prefix="eg-bench-$$"
cleanup() {
    docker ps -aq --filter "name=$prefix-" | xargs -r docker rm -f >/dev/null 2>&1 || true
    [ -n "${agent:-}" ] && kill "$agent" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
    mkdir "$work/img"
    cp "$(command -v busybox)" "$work/img/busybox"
    printf 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n' >"$work/img/Dockerfile"
    docker build -q -t "$IMAGE" "$work/img" >/dev/null
fi

ticks=$(getconf CLK_TCK)
cpu_seconds() { awk -v t="$ticks" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

run() {
    local mode="$1" out="$work/out-$1.jsonl" ids="$work/ids-$1.txt"
    local config="{\"highPriorityMessageFrequency\":\"PT1S\",\"lowPriorityMessageFrequency\":\"PT1S\",
      \"eventPriorityProcessCreate\":\"High\",\"aggregationEnabledProcessCreate\":false,
      \"containerCollectionEnabled\":$mode}"
    EDGEGUARD_CONFIG_JSON="$config" RUST_LOG=warn "$BIN" run --state-dir "$work/state-$mode" \
        --metrics-addr off >"$out" 2>"$work/err-$mode.log" &
    agent=$!
    sleep 3
    local cpu0 rss0 start
    cpu0=$(cpu_seconds "$agent"); rss0=$(rss_kb "$agent")
    start=$(date +%s.%N)
    : >"$ids"
    for i in $(seq 1 "$N"); do
        docker run -d --name "$prefix-$mode-$i" "$IMAGE" sleep 120 >>"$ids"
        docker exec "$prefix-$mode-$i" sh -c "sleep 0.2; echo bench-exec" >/dev/null
    done
    docker ps -aq --filter "name=$prefix-$mode-" | xargs -r docker rm -f >/dev/null
    sleep 3
    local cpu1 rss1 hwm end
    cpu1=$(cpu_seconds "$agent"); rss1=$(rss_kb "$agent"); hwm=$(hwm_kb "$agent")
    end=$(date +%s.%N)
    kill -TERM "$agent"; wait "$agent" || true; agent=
    python3 - "$mode" "$out" "$ids" "$cpu0" "$cpu1" "$rss0" "$rss1" "$hwm" "$start" "$end" <<'EOF'
import json, sys
mode, out, ids, cpu0, cpu1, rss0, rss1, hwm, start, end = sys.argv[1:]
ids = {l.strip() for l in open(ids) if l.strip()}
first = [0, 0]; execd = [0, 0]; other = [0, 0]; container_events = 0
actions = {}
for line in open(out):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    for e in m.get("Events", []):
        if e.get("Name") == "ContainerEvent":
            container_events += len(e.get("Payload", []))
            for r in e.get("Payload", []):
                if r.get("ContainerId") in ids:
                    actions[r["Action"]] = actions.get(r["Action"], 0) + 1
        if e.get("Name") != "ProcessCreate":
            continue
        for p in e.get("Payload", []):
            x = p.get("ExtraDetails", {})
            if x.get("ContainerId") not in ids:
                continue
            cmd = p.get("CommandLine", "")
            bucket = first if cmd.startswith("sleep 120") else execd if "bench-exec" in cmd else other
            bucket[0] += 1
            bucket[1] += "ContainerName" in x and "ContainerImage" in x
pct = lambda b: f"{b[1]}/{b[0]} ({100 * b[1] / b[0]:.0f}%)" if b[0] else "0/0"
print(f"containerCollectionEnabled={mode}: {len(ids)} containers in {float(end) - float(start):.1f} s; "
      f"agent CPU {float(cpu1) - float(cpu0):.2f} s; RSS {int(rss0) // 1024} -> {int(rss1) // 1024} MiB "
      f"(peak {int(hwm) // 1024} MiB); ContainerEvent records {container_events}")
print(f"  enriched ProcessCreate: first process {pct(first)}, exec'd shell {pct(execd)}, "
      f"other (runc init, ...) {pct(other)}")
if actions:
    print("  ContainerEvent actions of these containers:", dict(sorted(actions.items())))
EOF
}

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
run true
run false
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
