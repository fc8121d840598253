#!/usr/bin/env bash
# Generate the benchmark data: blocklists in each server's format, the upstream zone
# and the dnsperf query files. Deterministic; safe to run again.
#
#   bench/gen_data.sh            # 100k and 1m
#   bench/gen_data.sh 10k        # any sizes: 10k, 100k, 1m, 250000 ...
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100k 1m)
for size in "${sizes[@]}"; do
    python3 "$here/gen_data.py" "$size"
done
