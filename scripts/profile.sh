#!/usr/bin/env bash
# Profiles coney under a coney-perf load (default: bench scenario (a), 1p/1c 16 B autoack) with
# `perf record` (software cpu-clock sampling, DWARF call graphs: this VM has no hardware
# counters), then prints the hottest functions and a breakdown of coney's CPU time by stage.
#
#   scripts/profile.sh [--secs N] [--keep] [-- coney-perf args...]
#
#   --secs N   seconds sampled, in the middle of a run 4 s longer (default 6)
#   --keep     keep perf.data (its path is printed); it is deleted otherwise
#   e.g.       scripts/profile.sh -- -s 16 -a -r 600000      (steady state, no backlog)
#
# The broker runs on CPU 0 and coney-perf on CPU 1, as in scripts/bench.sh. Both are stopped
# on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# free_port, coney_spawn, coney_stop
. "$ROOT/scripts/lib.sh"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
SECS=6
KEEP=0
LOAD=(-s 16 -a)
# perf samples per second: enough for a stable top list in a few seconds.
SAMPLE_HZ=2000

while [ $# -gt 0 ]; do
    case "$1" in
        --secs) SECS="$2"; shift ;;
        --keep) KEEP=1 ;;
        --) shift; LOAD=("$@"); break ;;
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "profile.sh: unknown argument $1" >&2; exit 64 ;;
    esac
    shift
done

command -v perf >/dev/null || { echo "profile.sh: needs perf (Debian: linux-perf)" >&2; exit 1; }
(cd "$ROOT" && cargo build --release --bin coney --bin coney-perf >&2)

WORK="$(mktemp -d /tmp/coney-profile.XXXXXX)"
PERF_PID=""
cleanup() {
    [ -n "$PERF_PID" ] && kill "$PERF_PID" 2>/dev/null
    coney_stop || true
    if [ "$KEEP" = 1 ]; then echo "profile.sh: kept $WORK/perf.data" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

PORT="$(free_port)"
coney_spawn "$WORK/coney.log" taskset -c 0 "$TARGET/release/coney" --listen "127.0.0.1:$PORT" \
    --data-dir "$WORK/data" --log-level warn
"$TARGET/release/coney-perf" --wait-ready -h "amqp://127.0.0.1:$PORT" --timeout 10 >/dev/null
taskset -c 1 "$TARGET/release/coney-perf" -h "amqp://127.0.0.1:$PORT" -z $((SECS + 4)) --json \
    --broker-pid "$CONEY_PID" "${LOAD[@]}" >"$WORK/load.json" &
PERF_PID=$!
sleep 2
perf record -q -e cpu-clock -F "$SAMPLE_HZ" --call-graph dwarf,16384 -p "$CONEY_PID" \
    -o "$WORK/perf.data" -- sleep "$SECS" 2>/dev/null
wait "$PERF_PID"
PERF_PID=""
echo "load: $(cat "$WORK/load.json")"
echo
echo "hottest functions (self time):"
# head closes the pipe early; that is not a failure.
perf report -i "$WORK/perf.data" --no-children --sort symbol --stdio -g none 2>/dev/null |
    grep '%' | head -n 25 || true
perf script -i "$WORK/perf.data" -F ip,sym 2>/dev/null >"$WORK/stacks.txt"
echo
echo "coney CPU by stage (each sample counted once, first matching stage):"
python3 - "$WORK/stacks.txt" <<'PY'
import collections, re, sys

def stacks(path):
    cur = []
    for line in open(path, errors="replace"):
        line = line.strip()
        if not line:
            if cur:
                yield cur
            cur = []
            continue
        frame = re.sub(r"^[0-9a-f]+\s+", "", line)
        cur.append(re.sub(r"\s+\(inlined\)$", "", frame))
    if cur:
        yield cur

def has(s, *words):
    return any(w in f for f in s for w in words)

STAGES = [
    ("page faults (fresh memory being zeroed)", lambda s: has(s, "exc_page_fault")),
    ("read() syscalls", lambda s: has(s, "TcpStream as std::io::Read")),
    ("write() syscalls", lambda s: has(s, "TcpStream as std::io::Write")),
    ("epoll_wait", lambda s: has(s, "Poll::poll")),
    ("malloc/free", lambda s: any(k in s[0] for k in ("malloc", "_int_free", "cfree", "unlink_chunk", "free"))),
    ("Bytes refcount clone/drop", lambda s: any(k in s[0] for k in ("shallow_clone_vec", "shared_clone", "shared_drop", "promotable"))),
    ("queue-name HashMap lookup", lambda s: has(s, "HashMap<K,V,S,A>::get") and has(s, "Broker::publish")),
    ("BasicProperties::decode", lambda s: has(s, "BasicProperties::decode")),
    ("deliver: encode frames", lambda s: has(s, "write_method", "write_content") and has(s, "Session>::deliver")),
    ("publish: MessageBuilder", lambda s: has(s, "MessageBuilder")),
    ("publish: enqueue", lambda s: has(s, "Broker::enqueue")),
    ("deliver: consumer choice, bookkeeping", lambda s: has(s, "deliver_dirty")),
    ("frame parse, method decode, dispatch", lambda s: has(s, "handle_input")),
    ("reactor loop", lambda s: has(s, "Reactor::run")),
]
all_stacks = list(stacks(sys.argv[1]))
counts = collections.Counter()
for s in all_stacks:
    counts[next((name for name, rule in STAGES if rule(s)), "other")] += 1
for name, n in counts.most_common():
    print(f"  {100 * n / max(len(all_stacks), 1):5.1f}%  {name}")
PY
