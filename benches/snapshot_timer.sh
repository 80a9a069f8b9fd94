#!/bin/bash
# What a short snapshot timer costs an idle agent (issue 19: "short timers cost 1.5x").
#
# Runs the agent (file sink, no IoT Edge) with the short timers a user sets while testing a
# deployment (high PT3S, low PT5S, aggregation windows PT5S) and snapshotFrequency PT8S, then
# PT13H (the default), alternating, ROUNDS times each. Each run: 15 s for the start-up round,
# then the agent's own CPU time (utime + stime of /proc/PID/stat) over 90 s. Run it on a quiet
# machine: the agent reports every process, so other work adds to both figures.
#
#   bash benches/snapshot_timer.sh [BINARY] [ROUNDS]      # defaults: target/release/edgeguard, 2
set -euo pipefail
B=${1:-target/release/edgeguard}
ROUNDS=${2:-2}
[ -x "$B" ] || { echo "no agent binary at $B (cargo build --release)" >&2; exit 1; }
hz=$(getconf CLK_TCK)
for _ in $(seq "$ROUNDS"); do
  for snap in PT8S PT13H; do
    d=$(mktemp -d)
    cfg="{\"highPriorityMessageFrequency\":\"PT3S\",\"lowPriorityMessageFrequency\":\"PT5S\",\"snapshotFrequency\":\"$snap\",\"aggregationIntervalProcessCreate\":\"PT5S\",\"aggregationIntervalConnectionCreate\":\"PT5S\",\"aggregationIntervalProcessTerminate\":\"PT5S\"}"
    EDGEGUARD_CONFIG_JSON="$cfg" "$B" run --sink file --state-dir "$d" --metrics-addr off 2>"$d/log" &
    pid=$!
    sleep 15
    t0=$(awk '{print $14+$15}' "/proc/$pid/stat")
    sleep 90
    t1=$(awk '{print $14+$15}' "/proc/$pid/stat")
    kill -TERM "$pid"
    wait "$pid" || true
    echo "snapshotFrequency=$snap: agent CPU $(( (t1 - t0) * 1000 / hz )) ms in 90 s"
    rm -rf "$d"
  done
done
