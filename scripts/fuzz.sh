#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time and prints its figures.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default 60 s, all targets)
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# The library is built without tract/ort (`default-features = false` in
# fuzz/Cargo.toml) in its own target dir, $CARGO_TARGET_DIR_FUZZ
# (default: `fuzz` inside cargo's target directory): the sanitizer build
# shares nothing with the normal one. Corpora live in fuzz/corpus/<target> (committed; new inputs the
# fuzzer finds are added there); crashes land in fuzz/artifacts/<target>.
# Exit status: non-zero if any target crashed.
set -uo pipefail

cd "$(dirname "$0")/../fuzz"
secs=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(request frame manifest tokenizer)
fi
if [ -z "${CARGO_TARGET_DIR_FUZZ:-}" ]; then
    target=$(cd .. && cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
    CARGO_TARGET_DIR_FUZZ=$target/fuzz
fi
export CARGO_TARGET_DIR=$CARGO_TARGET_DIR_FUZZ

nice -n 10 cargo +nightly fuzz build --target-dir "$CARGO_TARGET_DIR" >/dev/null 2>&1 \
    || { echo "fuzz.sh: build failed (cd fuzz && cargo +nightly fuzz build)" >&2; exit 2; }

status=0
printf '%-10s %10s %10s %8s %s\n' target runs exec/s corpus result
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    log=$(mktemp)
    nice -n 10 cargo +nightly fuzz run --target-dir "$CARGO_TARGET_DIR" "$t" "corpus/$t" -- \
        -max_total_time="$secs" -max_len=16384 -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 >"$log" 2>&1
    rc=$?
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    files=$(ls "corpus/$t" | wc -l)
    if [ $rc -eq 0 ]; then
        result=ok
    else
        result="CRASH (rc=$rc) see fuzz/artifacts/$t and $log"
        status=1
        grep -m5 -E 'panicked|ERROR: AddressSanitizer|SUMMARY' "$log" >&2
    fi
    printf '%-10s %10s %10s %8s %s\n' "$t" "${runs:-?}" "${speed:-?}" "$files" "$result"
    [ $rc -eq 0 ] && rm -f "$log"
done
exit $status
