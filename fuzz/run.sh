#!/usr/bin/env bash
# Runs ncd's fuzz targets with cargo-fuzz on nightly, one core each.
#
#   fuzz/run.sh TARGET MINUTES     one target (config_ratchet, lists, control, dns_request,
#                                  proxy_request, proxy_sni)
#   fuzz/run.sh all MINUTES        every target, one after the other
#   fuzz/run.sh merge TARGET       add what the runs found that adds a coverage edge to the
#                                  committed seeds (fuzz/corpus/TARGET), minimised
#
# New inputs go to fuzz/corpus-work/TARGET (not committed); the committed seeds
# and regressions are read, never written. Crashes land in fuzz/artifacts/TARGET/:
# copy one to fuzz/regressions/TARGET/ (see fuzz/README.md). Extra arguments
# after MINUTES go to libFuzzer (e.g. -seed=1).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
targets=(config_ratchet lists control dns_request proxy_request proxy_sni)

usage() {
    sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 2
}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    cargo install cargo-fuzz
fi
if ! rustup toolchain list | grep -q '^nightly'; then
    echo "cargo-fuzz needs a nightly toolchain: rustup toolchain install nightly" >&2
    exit 1
fi

# The checks let the open bugs listed in fuzz/regressions/OPEN pass, so a run
# looks for new ones.
export NCD_FUZZ_SKIP_OPEN=1

run() {
    local target=$1 minutes=$2
    shift 2
    local dict=()
    [[ -f "$here/dicts/$target.dict" ]] && dict=("-dict=$here/dicts/$target.dict")
    mkdir -p "$here/corpus-work/$target" "$here/regressions/$target"
    echo "== $target: $minutes min" >&2
    (cd "$here" && nice -n 10 cargo +nightly fuzz run "$target" \
        "corpus-work/$target" "corpus/$target" "regressions/$target" -- \
        -max_total_time=$((minutes * 60)) -timeout=10 -print_final_stats=1 "${dict[@]}" "$@")
}

merge() {
    local target=$1
    mkdir -p "$here/corpus-work/$target"
    (cd "$here" && nice -n 10 cargo +nightly fuzz run "$target" \
        "corpus/$target" "corpus-work/$target" -- -merge=1 -use_counters=0)
    du -sh "$here/corpus/$target"
}

case "${1:-}" in
    merge)
        [[ $# -eq 2 ]] || usage
        merge "$2"
        ;;
    all)
        [[ $# -ge 2 ]] || usage
        minutes=$2
        shift 2
        for target in "${targets[@]}"; do
            run "$target" "$minutes" "$@"
        done
        ;;
    config_ratchet | lists | control | dns_request | proxy_request | proxy_sni)
        [[ $# -ge 2 ]] || usage
        run "$@"
        ;;
    *) usage ;;
esac
