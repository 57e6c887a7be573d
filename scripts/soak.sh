#!/usr/bin/env bash
# Bounded soak and chaos test against a coney started here, on loopback only.
#
#   scripts/soak.sh [--seconds N] [--no-build] [--keep] [-- extra soak.py options]
#
# Builds coney (cargo build --release; honours CARGO_TARGET_DIR), creates the pika 1.3
# virtualenv with scripts/pyenv.sh, starts the broker on a free 127.0.0.1 port with a fresh
# data dir, and runs scripts/soak.py for N seconds (default 60): 4 publishers with confirms,
# 6 consumers (one slow) with manual acks that are SIGKILLed and replaced at random, channels
# closed and reopened at random, 2,000 idle hand-made connections. Then it drains the queues and
# checks: nothing confirmed is lost, no duplicate without redelivered, broker RSS back near
# its baseline and its fd count back to its baseline. Finally the broker gets SIGTERM and must
# exit cleanly with no panic in its log.
#
# Exit status: 0 when every check passed, 1 on any violation or failure, 2 on bad usage.
# KEEP_TMP=1 (or --keep) keeps the scratch directory (broker log, data, per-process records).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# free_port, coney_start, coney_stop
. scripts/lib.sh
seconds=60 build=1 keep="${KEEP_TMP:-0}"
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) shift; seconds="${1:?--seconds needs a value}" ;;
        --seconds=*) seconds="${1#--seconds=}" ;;
        --no-build) build=0 ;;
        --keep) keep=1 ;;
        --) shift; extra=("$@"); break ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "soak.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
case "$seconds" in ''|*[!0-9]*) echo "soak.sh: --seconds must be a whole number" >&2; exit 2 ;; esac

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
CONEY="$TARGET_DIR/release/coney"
PY="$ROOT/.venv/pika1/bin/python"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/coney-soak.XXXXXX")"

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    coney_stop || true
    if [ "$keep" = 1 ]; then
        echo "soak.sh: scratch directory kept: $TMP" >&2
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "soak.sh: interrupted" >&2; exit 130' INT TERM

if [ "$build" = 1 ]; then
    echo "==== cargo build --release"
    cargo build --release
fi
[ -x "$CONEY" ] || { echo "soak.sh: no broker binary at $CONEY" >&2; exit 1; }
echo "==== scripts/pyenv.sh"
bash scripts/pyenv.sh

port="$(free_port)"
mkdir -p "$TMP/data" "$TMP/work"
if ! coney_start "$port" 10 "$TMP/coney.log" "$CONEY" --listen "127.0.0.1:$port" \
    --data-dir "$TMP/data" --log-level warn; then
    echo "soak.sh: coney did not start on 127.0.0.1:$port" >&2
    exit 1
fi
echo "==== soak: coney pid $CONEY_PID on 127.0.0.1:$port for $seconds s (scratch $TMP)"

rc=0
# soak.py bounds its own phases; this outer limit is a backstop (run + drain + settle + slack).
timeout --kill-after=10 $((seconds + 400)) \
    "$PY" scripts/soak.py --port "$port" --pid "$CONEY_PID" --seconds "$seconds" \
        --work-dir "$TMP/work" --broker-log "$TMP/coney.log" --data-dir "$TMP/data" \
        "${extra[@]}" || rc=$?

broker_rc=0
coney_stop || broker_rc=$?
if [ "$broker_rc" != 0 ]; then
    echo "soak.sh: FAIL: coney exited with status $broker_rc after SIGTERM" >&2
    rc=1
fi
if grep -q "panicked" "$TMP/coney.log"; then
    echo "soak.sh: FAIL: coney panicked:" >&2
    grep -A5 "panicked" "$TMP/coney.log" | head -n 20 >&2
    rc=1
fi
warnings="$(grep -c -E ' (WARN|ERROR) ' "$TMP/coney.log" || true)"
echo "broker log: $warnings warning/error lines (scratch $TMP/coney.log)"
if [ "$rc" != 0 ]; then
    echo "---- tail of coney log"
    tail -n 20 "$TMP/coney.log" || true
    echo "soak.sh: FAIL"
    exit 1
fi
echo "soak.sh: PASS"
