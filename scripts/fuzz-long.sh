#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for a fixed time and prints, per
# target, how many inputs ran and how many crashing inputs were found.
#
# Usage: scripts/fuzz-long.sh [SECONDS_PER_TARGET] [--json] [--ci]
#   SECONDS_PER_TARGET  run time of each target (default 300)
#   --json              print one JSON object as the last line of stdout
#   --ci                short bounded run: 20 s per target unless given
#
# Exit status: 0 when no target crashed, 1 when one did, 2 on a usage error.
# Runs on the stable toolchain: targets are built with `--sanitizer none`
# and debug assertions on (`--dev`), so integer overflow panics count as
# crashes. Crashing inputs stay in fuzz/artifacts/TARGET/; corpora grow in
# fuzz/corpus/TARGET/ between runs.

set -euo pipefail

seconds=""
json=false
ci=false
for arg in "$@"; do
    case "$arg" in
        --json) json=true ;;
        --ci) ci=true ;;
        -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *[!0-9]*|"") echo "error: unknown argument \"$arg\" (expected SECONDS, --json or --ci)" >&2; exit 2 ;;
        *) seconds="$arg" ;;
    esac
done
if [[ -z "$seconds" ]]; then
    if $ci; then seconds=20; else seconds=300; fi
fi

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/fuzz"
if ! cargo fuzz --help >/dev/null 2>&1; then
    echo "error: cargo-fuzz is not installed (run: cargo install cargo-fuzz)" >&2
    exit 1
fi

echo "building fuzz targets" >&2
cargo fuzz build --sanitizer none --dev >&2

targets=$(cargo fuzz list)
failed=0
rows=()
for target in $targets; do
    mkdir -p "corpus/$target" "artifacts/$target"
    before=$(find "artifacts/$target" -type f | wc -l)
    log=$(mktemp)
    echo "fuzzing $target for ${seconds}s" >&2
    status=0
    cargo fuzz run --sanitizer none --dev "$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=1024 \
        >"$log" 2>&1 || status=$?
    after=$(find "artifacts/$target" -type f | wc -l)
    crashes=$((after - before))
    # libFuzzer prints "stat::number_of_executed_units: N" on exit; after a
    # crash it prints "Done N runs" or nothing, so fall back to those.
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
    if [[ -z "$execs" ]]; then
        execs=$(grep -o 'Done [0-9]* runs' "$log" | grep -o '[0-9]*' | tail -1 || true)
    fi
    if [[ -z "$execs" ]]; then
        execs=$(grep -o '^#[0-9]*' "$log" | tr -d '#' | tail -1 || true)
    fi
    execs=${execs:-0}
    if [[ $status -ne 0 && $crashes -eq 0 ]]; then
        # A failure that left no artifact (build or harness error) still fails.
        crashes=1
    fi
    if [[ $crashes -gt 0 ]]; then
        failed=1
        echo "--- $target failed (exit $status); last lines of its log:" >&2
        tail -30 "$log" >&2
    fi
    rm -f "$log"
    printf '%-16s %12s executions %4s crashes\n' "$target" "$execs" "$crashes"
    rows+=("{\"target\":\"$target\",\"seconds\":$seconds,\"executions\":$execs,\"crashes\":$crashes}")
done

if $json; then
    joined=$(IFS=,; echo "${rows[*]}")
    echo "{\"targets\":[$joined],\"failed\":$([[ $failed -eq 1 ]] && echo true || echo false)}"
fi
exit $failed
