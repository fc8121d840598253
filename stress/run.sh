#!/usr/bin/env bash
# The long versions of the fault, flood and kill tests in daemon/tests/faults.rs
# and of the proxy load test in daemon/tests/proxy.rs (CI runs the short ones).
# See stress/README.md.
#
#   stress/run.sh                  # every long test, release build
#   stress/run.sh long_flood       # one of them (any libtest filter)
#   NCD_KILLS=500 stress/run.sh long_kill_loop
#   NCD_PROXY_CONNECTIONS=20000 stress/run.sh long_proxy_load
#
# Needs what the test suite needs (dig, python3, util-linux), and root for the
# mount-namespace and other-user parts. Runs on loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."

export NCD_FLOOD_SECS="${NCD_FLOOD_SECS:-30}"
export NCD_FLOOD_RATE="${NCD_FLOOD_RATE:-130000}"
export NCD_FLOOD_THREADS="${NCD_FLOOD_THREADS:-2}"
export NCD_FLOOD_MAX_RSS_MIB="${NCD_FLOOD_MAX_RSS_MIB:-256}"
export NCD_IDLE_TCP="${NCD_IDLE_TCP:-1000}"
export NCD_KILLS="${NCD_KILLS:-100}"
export NCD_PROXY_CONNECTIONS="${NCD_PROXY_CONNECTIONS:-10000}"
export NCD_PROXY_SLOW="${NCD_PROXY_SLOW:-200}"
export NCD_PROXY_MAX_GROWTH_MIB="${NCD_PROXY_MAX_GROWTH_MIB:-512}"

# A debug ncdd answers a fraction of what a release one does: flood the real thing.
profile=(--release)
if [ "${NCD_STRESS_PROFILE:-release}" = debug ]; then
    profile=()
fi

filters=("$@")
if [ "${#filters[@]}" -eq 0 ]; then
    filters=(long_)
fi

echo "stress: flood ${NCD_FLOOD_SECS}s at ${NCD_FLOOD_RATE}/s from ${NCD_FLOOD_THREADS} threads" \
    "with ${NCD_IDLE_TCP} idle TCP connections (peak RSS limit ${NCD_FLOOD_MAX_RSS_MIB} MiB);" \
    "${NCD_KILLS} kills; proxy: ${NCD_PROXY_CONNECTIONS} connections and ${NCD_PROXY_SLOW} slow" \
    "clients of each kind; profile ${NCD_STRESS_PROFILE:-release}"
# The tests drive the real `ncd` next to `ncdd`: build it first.
cargo build -p ncd "${profile[@]}"
started=$(date +%s)
cargo test -p ncd-daemon --test faults --test proxy "${profile[@]}" -- \
    --ignored --test-threads=1 --nocapture "${filters[@]}"
echo "stress: done in $(( $(date +%s) - started ))s"
