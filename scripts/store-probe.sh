#!/usr/bin/env bash
# Measures the message store against the figures in README's Durability section.
#
#   scripts/store-probe.sh disk MESSAGES           # held message vs. disk use
#   scripts/store-probe.sh recovery QUEUES PER_QUEUE   # restart and kill -9 with a backlog
#   scripts/store-probe.sh declare N [RABBIT_PORT RABBIT_DIR]   # durable declares, restart
#
# disk: a pika consumer holds one persistent message of a durable queue unacked while
#   MESSAGES persistent 4 KiB messages flow through another durable queue (coney-perf: one
#   producer with confirms, one consumer acking every 100, prefetch 1000). Prints the data
#   directory's size (du, apparent bytes) once it stops changing, and the segment files.
# recovery: fills QUEUES durable queues with PER_QUEUE persistent 16-byte messages each
#   (coney-perf, no consumer), then prints the broker's RSS while running, and for a clean
#   restart (SIGTERM) and a crash (SIGKILL): the time from exec to the first AMQP connection
#   opened, the RSS once started and the peak RSS (VmHWM) of the start.
# declare: N durable queues each bound to amq.direct, with pika on one channel
#   (scripts/declare_rate.py: rates over 1..1k, 1k..10k, then per 10k), then the time from
#   exec to the first AMQP connection after a clean restart and after kill -9; with
#   RABBIT_PORT and RABBIT_DIR, the same declares against a RabbitMQ started there with
#   scripts/rabbitmq.sh (and stopped after).
#
# Uses target/release/coney and coney-perf (built here unless --no-build; honours
# CARGO_TARGET_DIR) and .venv/pika1 (scripts/pyenv.sh). Everything on 127.0.0.1, scratch
# under /tmp, removed at the end unless KEEP_TMP=1. Every wait is bounded.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
build=1
if [ "${1:-}" = --no-build ]; then build=0; shift; fi
mode="${1:-}"
case "$mode" in
    disk) [ $# -eq 2 ] || { sed -n '2,20p' "$0"; exit 2; } ;;
    recovery) [ $# -eq 3 ] || { sed -n '2,20p' "$0"; exit 2; } ;;
    declare) [ $# -eq 2 ] || [ $# -eq 4 ] || { sed -n '2,26p' "$0"; exit 2; } ;;
    *) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
if [ "$build" = 1 ]; then cargo build --release --bins >&2; fi
CONEY="$TARGET_DIR/release/coney"
PERF="$TARGET_DIR/release/coney-perf"
PY="$ROOT/.venv/pika1/bin/python"
TMP="$(mktemp -d /tmp/coney-store-probe.XXXXXX)"
DATA="$TMP/data"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
URI="amqp://guest:guest@127.0.0.1:$PORT/%2F"
PID=""
HOLDER=""
cleanup() {
    [ -n "$HOLDER" ] && kill "$HOLDER" 2>/dev/null || true
    [ -n "$PID" ] && kill -KILL "$PID" 2>/dev/null || true
    wait 2>/dev/null || true
    [ "${KEEP_TMP:-0}" = 1 ] && echo "kept $TMP" >&2 || rm -rf "$TMP"
}
trap cleanup EXIT

start() { # starts coney; sets READY_MS: ms from exec to the first AMQP connection opened
    local since=$EPOCHREALTIME
    "$CONEY" --listen "127.0.0.1:$PORT" --data-dir "$DATA" --log-level info >>"$TMP/coney.log" 2>&1 &
    PID=$!
    READY_MS=$("$PERF" -h "$URI" --wait-ready --since "$since" --timeout 120 |
        sed -n 's/.*amqp_open_ms[^0-9]*\([0-9.]*\).*/\1/p')
}
status_kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$PID/status"; }
settle() { # waits until the broker's RSS is the same twice in a row (at most 10 s)
    local last="" now i
    for i in $(seq 1 20); do
        sleep 0.5
        now=$(status_kb VmRSS)
        [ "$now" = "$last" ] && break
        last=$now
    done
}
stop() { # SIGTERM or SIGKILL, and wait (at most 30 s)
    kill "-$1" "$PID"
    local i
    for i in $(seq 1 300); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    wait "$PID" 2>/dev/null || true
    PID=""
}

if [ "$mode" = disk ]; then
    N=$2
    mkdir -p "$DATA"
    start
    cat >"$TMP/hold.py" <<'EOF'
import sys, time, pika
c = pika.BlockingConnection(pika.ConnectionParameters('127.0.0.1', int(sys.argv[1])))
ch = c.channel()
ch.queue_declare('held', durable=True)
ch.confirm_delivery()
ch.basic_publish('', 'held', b'h' * 4096, pika.BasicProperties(delivery_mode=2))
ch.basic_qos(prefetch_count=1)
got = []
ch.basic_consume('held', lambda c_, m, p, b: got.append(m), auto_ack=False)
deadline = time.time() + 3600
while time.time() < deadline:
    c.process_data_events(time_limit=0.5)
    if got and not sys.stdout.closed:
        print('HOLDING', flush=True)
        got.clear()
EOF
    "$PY" "$TMP/hold.py" "$PORT" >"$TMP/hold.out" 2>&1 &
    HOLDER=$!
    for i in $(seq 1 100); do grep -q HOLDING "$TMP/hold.out" && break; sleep 0.1; done
    grep -q HOLDING "$TMP/hold.out" || { echo "the holder did not get its message" >&2; exit 1; }
    t0=$EPOCHREALTIME
    "$PERF" -h "$URI" -x 1 -y 1 -s 4096 -f persistent -u flow -c 1000 -q 1000 -A 100 \
        -C "$N" -D "$N" --json >"$TMP/perf.json"
    t1=$EPOCHREALTIME
    last=""
    for i in $(seq 1 40); do
        sleep 0.5
        now=$(du -sb "$DATA" | cut -f1)
        [ "$now" = "$last" ] && break
        last=$now
    done
    live=$(grep -c HOLDING "$TMP/hold.out")
    echo "messages: $N x 4096 B through 'flow' in $(echo "$t1 - $t0" | bc) s; $live held unacked on 'held'"
    echo "data dir: $now bytes ($(awk -v b="$now" 'BEGIN { printf "%.1f", b / 1048576 }') MiB)"
    echo "segment files: $(ls "$DATA/msgs" | tr '\n' ' ')"
    echo "compaction passes: $(grep -c 'compacting segments' "$TMP/coney.log" || true)"
    echo "coney-perf: $(cat "$TMP/perf.json")"
    exit 0
fi

if [ "$mode" = declare ]; then
    N=$2
    mkdir -p "$DATA"
    start
    echo "coney:"
    "$PY" scripts/declare_rate.py "$PORT" "$N"
    echo "data dir: $(du -sb "$DATA" | cut -f1) bytes: $(ls "$DATA" | tr '\n' ' ')"
    for how in TERM KILL; do
        stop "$how"
        start
        settle
        echo "after SIG$how: AMQP open ${READY_MS} ms after exec; RSS $(status_kb VmRSS) KiB"
    done
    "$PY" - "$PORT" "$N" <<'EOF'
import sys, pika
c = pika.BlockingConnection(pika.ConnectionParameters('127.0.0.1', int(sys.argv[1])))
ch = c.channel()
ch.confirm_delivery()
n = int(sys.argv[2])
for i in (1, n // 2, n):
    ch.queue_declare('device.%07d' % i, passive=True)
    ch.basic_publish('amq.direct', 'device.%07d' % i, b'probe', mandatory=True)
print('queues 1, %d and %d exist and are bound after the restarts' % (n // 2, n))
EOF
    stop TERM
    if [ $# -eq 4 ]; then
        rpid=$(scripts/rabbitmq.sh start "$3" "$4")
        echo "RabbitMQ (pid $rpid):"
        "$PY" scripts/declare_rate.py "$3" "$N" || true
        scripts/rabbitmq.sh stop "$4" >&2
    fi
    exit 0
fi

Q=$2 PER=$3
mkdir -p "$DATA"
start
t0=$EPOCHREALTIME
for i in $(seq 0 $((Q - 1))); do
    "$PERF" -h "$URI" -x 1 -y 0 -s 16 -f persistent -u "backlog-$i" -c 2000 -C "$PER" \
        --no-cleanup --json >"$TMP/fill.json" || { cat "$TMP/fill.json"; exit 1; }
done
echo "filled $Q queues x $PER persistent 16 B messages in $(echo "$EPOCHREALTIME - $t0" | bc) s"
settle
echo "running: RSS $(status_kb VmRSS) KiB; data dir $(du -sb "$DATA" | cut -f1) bytes"
for how in TERM KILL; do
    stop "$how"
    start
    settle
    echo "after SIG$how: AMQP open ${READY_MS} ms after exec; RSS $(status_kb VmRSS) KiB; peak (VmHWM) $(status_kb VmHWM) KiB"
done
grep 'messages recovered' "$TMP/coney.log" | tail -1
stop TERM
