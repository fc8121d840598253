#!/usr/bin/env bash
# The proxy benchmark: direct to nginx, through ncdd's proxy, through mitmproxy.
# The harness is bench/proxy/run.sh; see bench/README.md ("The proxy").
exec "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/proxy/run.sh" "$@"
