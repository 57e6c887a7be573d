#!/usr/bin/env bash
# Runs every cargo-fuzz target under fuzz/ for a bounded time and reports what happened.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]      (default 60; CI passes ~20)
#
# Installs cargo-fuzz (cargo install cargo-fuzz --locked) if it is missing, builds all targets
# once, then runs each target in turn for SECONDS_PER_TARGET seconds, starting from the
# committed seeds in fuzz/corpus/<target>/ plus whatever an earlier local run found (kept in
# fuzz/target/corpus-work/<target>/, never committed).
#
# Prints executions per target and every crash (the panic message, the reproducer file under
# fuzz/artifacts/<target>/ and the command that replays it). Exit status: 0 when no target
# crashed, 1 on a crash or a build failure, and 0 with a "SKIP" line when no nightly
# toolchain is installed (cargo-fuzz needs nightly for -Zsanitizer/coverage flags).
#
# Environment: FUZZ_TARGETS="frame method" restricts the targets. Targets run one at a time
# (the machine has two cores).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECONDS_PER_TARGET="${1:-60}"
case "$SECONDS_PER_TARGET" in
    ''|*[!0-9]*) echo "fuzz.sh: SECONDS_PER_TARGET must be a whole number, got '$SECONDS_PER_TARGET'" >&2; exit 2 ;;
esac
TARGETS="${FUZZ_TARGETS:-frame method table properties topic_trie session http cert_subject dns}"
# The code under test is safe Rust, so AddressSanitizer would find nothing that a panic or a
# libFuzzer deadly-signal does not; without it a target runs roughly twice as fast.
SANITIZER=none
# A single input slower than this is reported as a hang (libFuzzer -timeout).
INPUT_TIMEOUT_SECS=10
RSS_LIMIT_MB=2048

started=$SECONDS
say() { printf '==== %s\n' "$*"; }

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz.sh: SKIP: no nightly Rust toolchain (rustup toolchain install nightly); fuzzing not run"
    exit 0
fi

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    say "installing cargo-fuzz"
    t0=$SECONDS
    if ! cargo install cargo-fuzz --locked; then
        echo "fuzz.sh: FAIL: cargo install cargo-fuzz --locked failed" >&2
        exit 1
    fi
    echo "cargo-fuzz installed in $((SECONDS - t0)) s"
fi

cd "$ROOT/fuzz"
say "building fuzz targets ($(cargo +nightly fuzz --version))"
t0=$SECONDS
if ! cargo +nightly fuzz build --sanitizer "$SANITIZER"; then
    echo "fuzz.sh: FAIL: fuzz targets do not build" >&2
    exit 1
fi
echo "built in $((SECONDS - t0)) s"

LOGS="$ROOT/fuzz/target/fuzz-logs"
mkdir -p "$LOGS"
summary=()
crashed=0
for t in $TARGETS; do
    work="$ROOT/fuzz/target/corpus-work/$t"
    seeds="$ROOT/fuzz/corpus/$t"
    mkdir -p "$work" "$seeds" "$ROOT/fuzz/artifacts/$t"
    log="$LOGS/$t.log"
    say "fuzzing $t for $SECONDS_PER_TARGET s"
    rc=0
    # The outer timeout is a backstop for a hang libFuzzer itself fails to report.
    timeout --kill-after=10 $((SECONDS_PER_TARGET + 120)) \
        cargo +nightly fuzz run --sanitizer "$SANITIZER" "$t" "$work" "$seeds" -- \
            -max_total_time="$SECONDS_PER_TARGET" -timeout="$INPUT_TIMEOUT_SECS" \
            -rss_limit_mb="$RSS_LIMIT_MB" -print_final_stats=1 >"$log" 2>&1 || rc=$?
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
    if [ -z "$execs" ]; then   # a crash skips the final stats; take the last progress line
        execs="$(sed -n 's/^#\([0-9]*\).*/\1/p' "$log" | tail -n 1)"
    fi
    corpus_files="$(find "$work" -type f | wc -l)"
    if [ "$rc" = 0 ]; then
        summary+=("$(printf '%-11s ok     %12s execs  %6s corpus' "$t" "${execs:-?}" "$corpus_files")")
        continue
    fi
    crashed=1
    artifact="$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)"
    summary+=("$(printf '%-11s CRASH  %12s execs  %s' "$t" "${execs:-?}" "${artifact:-(no artifact, rc=$rc)}")")
    echo "---- $t crashed (rc=$rc); log $log"
    grep -E -A6 "panicked at|==ERROR|deadly signal|timeout after|out-of-memory" "$log" | head -n 40 || true
    if [ -n "$artifact" ]; then
        echo "---- reproducer: (cd fuzz && cargo +nightly fuzz run --sanitizer $SANITIZER $t $artifact)"
        echo "---- input bytes:"
        od -A d -t x1 "$artifact" | head -n 20
    fi
done

say "summary ($SECONDS_PER_TARGET s per target, $((SECONDS - started)) s in all)"
for line in "${summary[@]}"; do echo "$line"; done
if [ "$crashed" = 1 ]; then
    echo "fuzz.sh: FAIL: at least one target crashed"
    exit 1
fi
echo "fuzz.sh: all targets ran without a crash"
