#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 600), one after another, with its corpus in
# fuzz/corpus/<target> (kept in the repository: minimized with `cargo fuzz cmin` after a run
# that found no crash, so the next run starts where this one stopped), and prints a line per
# target: executions, coverage, corpus size, and whether it crashed. A crash leaves its input in
# fuzz/artifacts/<target> (not kept). cargo-fuzz on a stable toolchain needs RUSTC_BOOTSTRAP=1
# for the sanitizer flags. docs/FUZZING.md records the runs.
#
#   fuzz/run-all.sh [SECONDS] [TARGET...]
set -uo pipefail
cd "$(dirname "$0")"
SECS=${1:-600}
shift || true
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
export RUSTC_BOOTSTRAP=1
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    log=$(mktemp)
    cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$SECS" -rss_limit_mb=4096 -timeout=30 -print_final_stats=1 >"$log" 2>&1
    rc=$?
    runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | awk '{print $2}' | tail -1)
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | awk '{print $2}')
    if [ $rc -eq 0 ]; then
        # Keep the corpus small: only inputs that add coverage.
        cargo fuzz cmin "$t" "corpus/$t" >/dev/null 2>&1 || true
        echo "$t: ${runs:-?} runs in ${SECS} s, coverage ${cov:-?}, corpus $(ls "corpus/$t" | wc -l) inputs, no crash"
    else
        echo "$t: FAILED after ${runs:-?} runs (exit $rc); see artifacts/$t"
        tail -30 "$log"
    fi
    rm -f "$log"
done
