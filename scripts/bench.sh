#!/usr/bin/env bash
# Benchmarks coney (and, with --compare, RabbitMQ) with coney-perf over a fixed scenario set,
# the brokers taking turns scenario by scenario in the same run, and prints a table per scenario: msg/s and the
# ratio, consumer latency p50/p99, broker CPU seconds per million messages and peak RSS. The
# same tables go to target/bench/results-DATE.md.
#
#   scripts/bench.sh [--quick] [--compare | --no-compare] [--only a,b,...] [--secs N] [--coney BIN]
#                    [--management on|off]
#
#   --quick        3 s per scenario, 1,000 idle connections, 10,000 queues: a smoke test
#   --compare      also run RabbitMQ (default when rabbitmq-server is installed or installable)
#   --no-compare   coney only
#   --only LIST    scenario ids to run (a b c d e f g h i j k l m n o)
#   --secs N       seconds per load scenario (default 10)
#   --coney BIN    measure this coney binary (e.g. an older build) instead of this tree's
#   --tls          load over amqps: each broker gets a TLS listener with a throw-away CA and
#                  server certificate (openssl, EC P-256) and coney-perf connects with amqps://
#   --management on|off  coney's management and Prometheus listeners on free ports (default
#                  on) or off (--management-listen off --prometheus-listen off)
#
# Every broker is restarted for every scenario, so a backlog or heap left by one scenario
# cannot skew the next and VmHWM is that scenario's peak. Brokers are pinned to CPU 0 and the
# load generator to CPU 1 when there are two CPUs or more. Every broker started here is
# stopped on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# free_port, coney_spawn, coney_stop, proc_status_kb
. "$ROOT/scripts/lib.sh"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
CONEY="$TARGET/release/coney"
PERF="$TARGET/release/coney-perf"
# The private RabbitMQ node (start PORT DIR prints beam.smp's pid; stop DIR).
RABBITMQ_SH="$ROOT/scripts/rabbitmq.sh"
RMQ_SERVER="${RMQ_BIN:-/usr/lib/rabbitmq/bin/rabbitmq-server}"

SECS=10
IDLE_CONNECTIONS=10000
# (o): queues declared, every MANY_DURABLE_EVERY-th durable, and the idle window measured after.
MANY_QUEUES=100000
MANY_DURABLE_EVERY=10
MANY_IDLE_SECS=10
COMPARE=auto
TLS=""
MANAGEMENT=on
ONLY="a b c d e f g h i j k l m n o"
# Open files needed: the idle connections, plus margin for the broker's own files.
FD_LIMIT_WANTED=$((IDLE_CONNECTIONS * 2 + 1024))
# Settling time before reading a freshly started broker's idle RSS.
IDLE_RSS_SETTLE_SECS=2

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) SECS=3; IDLE_CONNECTIONS=1000; MANY_QUEUES=10000; MANY_IDLE_SECS=3 ;;
        --compare) COMPARE=yes ;;
        --no-compare) COMPARE=no ;;
        --only) ONLY="${2//,/ }"; shift ;;
        --secs) SECS="$2"; shift ;;
        --coney) CONEY="$(realpath "$2")"; CONEY_GIVEN=1; shift ;;
        --tls) TLS=1 ;;
        --management) MANAGEMENT="$2"; shift ;;
        -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench.sh: unknown argument $1" >&2; exit 64 ;;
    esac
    shift
done

log() { echo "bench: $*" >&2; }

# --- setup -------------------------------------------------------------------------------

if [ "$COMPARE" != no ]; then
    if [ -x "$RMQ_SERVER" ]; then
        COMPARE=yes
    elif [ "$COMPARE" = yes ] || [ "$(id -u)" = 0 ]; then
        log "installing rabbitmq-server"
        if "$RABBITMQ_SH" install; then
            COMPARE=yes
        else
            log "cannot install RabbitMQ: coney only"
            COMPARE=no
        fi
    else
        COMPARE=no
    fi
fi

log "building release binaries"
if [ -n "${CONEY_GIVEN:-}" ]; then
    (cd "$ROOT" && cargo build --release --bin coney-perf >&2)
else
    (cd "$ROOT" && cargo build --release --bin coney --bin coney-perf >&2)
fi

hard="$(ulimit -Hn)"
want=$FD_LIMIT_WANTED
if [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ]; then want=$hard; fi
ulimit -n "$want" || true
FD_LIMIT="$(ulimit -n)"

BROKER_PIN=() LOAD_PIN=() PINNING="none (fewer than 2 CPUs or no taskset)"
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
    BROKER_PIN=(taskset -c 0) LOAD_PIN=(taskset -c 1)
    PINNING="broker on CPU 0, coney-perf on CPU 1"
fi

STAMP="$(date -u +%Y-%m-%dT%H%M%SZ)"
# Other work on the machine skews every number here; the report shows how much there was.
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
OUT_DIR="$ROOT/target/bench"
SCRATCH="$(mktemp -d /tmp/coney-bench.XXXXXX)"
RESULTS="$SCRATCH/results"
mkdir -p "$RESULTS"
CONEY_PID=""
RMQ_DIR="$SCRATCH/rabbitmq"
PERF_TLS=()
if [ -n "$TLS" ]; then
    # A CA and a server certificate for 127.0.0.1, used by both brokers.
    pki="$SCRATCH/pki"
    mkdir -p "$pki"
    for k in ca server; do
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$pki/$k.key" 2>/dev/null
    done
    openssl req -x509 -new -key "$pki/ca.key" -out "$pki/ca.pem" -days 2 -subj "/CN=bench CA" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$pki/server.ext"
    openssl req -new -key "$pki/server.key" -out "$pki/server.csr" -subj "/CN=127.0.0.1" 2>/dev/null
    openssl x509 -req -in "$pki/server.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" \
        -CAcreateserial -out "$pki/server.pem" -days 2 -extfile "$pki/server.ext" 2>/dev/null
    PERF_TLS=(--cacert "$pki/ca.pem")
fi
# tls_conf PORT: the rabbitmq.conf lines of a TLS listener on PORT (both brokers read them).
tls_conf() {
    printf 'listeners.ssl.default = 127.0.0.1:%s\nssl_options.certfile = %s\nssl_options.keyfile = %s\n' \
        "$1" "$pki/server.pem" "$pki/server.key"
}

cleanup() {
    local rc=$?
    stop_broker coney || true
    stop_broker rabbitmq || true
    # Raw JSON of every run and the broker logs are kept next to the Markdown; data dirs are not.
    mkdir -p "$OUT_DIR/raw-$STAMP"
    cp "$RESULTS"/* "$OUT_DIR/raw-$STAMP/" 2>/dev/null || true
    cp "$SCRATCH/coney.log" "$SCRATCH/rabbitmq.log" "$OUT_DIR/raw-$STAMP/" 2>/dev/null || true
    rm -rf "$SCRATCH"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- brokers -----------------------------------------------------------------------------

# start_broker NAME: starts it on a free port, waits until it accepts an AMQP connection and
# sets BROKER_PID (the process to measure), BROKER_URI, READY_JSON (start-up times).
start_broker() {
    local port t0 tls_port conf=()
    port="$(free_port)"
    BROKER_URI="amqp://guest:guest@127.0.0.1:$port"
    if [ -n "$TLS" ]; then
        tls_port="$(free_port)"
        BROKER_URI="amqps://guest:guest@127.0.0.1:$tls_port"
        tls_conf "$tls_port" >"$SCRATCH/coney-tls.conf"
        conf=(--config "$SCRATCH/coney-tls.conf")
        export RABBITMQ_EXTRA_CONF="$(tls_conf "$tls_port")"
    fi
    case "$1" in
        coney)
            rm -rf "$SCRATCH/coney-data"
            t0=$EPOCHREALTIME
            local http=(--management-listen off --prometheus-listen off)
            if [ "$MANAGEMENT" = on ]; then
                http=(--management-listen "127.0.0.1:$(free_port)"
                      --prometheus-listen "127.0.0.1:$(free_port)")
            fi
            coney_spawn "$SCRATCH/coney.log" "${BROKER_PIN[@]}" "$CONEY" --listen "127.0.0.1:$port" \
                --data-dir "$SCRATCH/coney-data" --log-level warn "${conf[@]}" "${http[@]}"
            BROKER_PID=$CONEY_PID
            ;;
        rabbitmq)
            # rabbitmq.sh start waits for the port itself; it runs in the background so the
            # prober below times the start-up (which includes the script's epmd and config
            # set-up, tens of milliseconds).
            t0=$EPOCHREALTIME
            "${BROKER_PIN[@]}" "$RABBITMQ_SH" start "$port" "$RMQ_DIR" >"$SCRATCH/rabbitmq.pid" \
                2>>"$SCRATCH/rabbitmq.log" &
            RMQ_STARTER=$!
            ;;
    esac
    READY_JSON="$("${LOAD_PIN[@]}" "$PERF" "${PERF_TLS[@]}" --wait-ready -h "$BROKER_URI" --since "$t0" --timeout 90)" || {
        log "$1 did not become ready"
        return 1
    }
    if [ "$1" = rabbitmq ]; then
        wait "$RMQ_STARTER" || { log "rabbitmq.sh start failed: $(tail -n 5 "$SCRATCH/rabbitmq.log")"; return 1; }
        BROKER_PID="$(tr -dc '0-9' <"$SCRATCH/rabbitmq.pid")"
        [ -n "$BROKER_PID" ] || { log "rabbitmq.sh start printed no pid"; return 1; }
    fi
}

stop_broker() {
    case "$1" in
        coney) coney_stop 5 || true ;;
        rabbitmq) [ -d "$RMQ_DIR" ] && "$RABBITMQ_SH" stop "$RMQ_DIR" 2>>"$SCRATCH/rabbitmq.log" ;;
    esac
}

# error_json FILE: the last line of FILE as {"error": "..."}.
error_json() {
    tail -n 1 "$1" | python3 -c 'import json, sys; print(json.dumps({"error": sys.stdin.read().strip()}))'
}

# --- scenarios -----------------------------------------------------------------------------

declare -A TITLE ARGS
TITLE[a]="(a) 1 producer / 1 consumer, 16 B, transient, autoack"
ARGS[a]="-s 16 -a"
TITLE[b]="(b) 1p/1c, 16 B, manual ack, prefetch 1000, multi-ack 100"
ARGS[b]="-s 16 -q 1000 -A 100"
TITLE[c]="(c) 1p/1c, 1 KiB persistent, durable queue, confirms window 1000, manual ack"
ARGS[c]="-s 1024 -f persistent --queue-durable -c 1000 -q 1000 -A 100"
TITLE[d]="(d) fanout: 1 producer, 10 queues with one consumer each, 16 B, autoack"
ARGS[d]="-s 16 -a -e bench.fanout -t fanout --queues 10"
TITLE[e]="(e) topic: 1,000 bindings (wildcards and exact), random keys from 1,000, 16 B, autoack"
ARGS[e]="-s 16 -a -e bench.topic -t topic --topic-bindings 1000 --routing-keys-random 1000"
TITLE[f1]="(f) latency at a fixed 1,000 msg/s, 16 B, autoack"
ARGS[f1]="-s 16 -a -r 1000"
TITLE[f2]="(f) latency at a fixed 10,000 msg/s, 16 B, autoack"
ARGS[f2]="-s 16 -a -r 10000"
TITLE[g]="(g) 1p/1c, 64 KiB bodies, transient, autoack"
ARGS[g]="-s 65536 -a"
TITLE[j]="(j) retry loop: every message rejected once into a retry queue with x-message-ttl 100 ms that dead-letters it back, then acked; 10,000 msg/s, 16 B, prefetch 1000"
ARGS[j]="-s 16 -q 1000 -A 100 --retry-ttl 100 -r 10000"
TITLE[k]="(k) priority queue, x-max-priority 9: priorities 0..9 at random, 16 B, autoack"
ARGS[k]="-s 16 -a --max-priority 9"
TITLE[l]="(l) x-max-length 10,000 (drop-head) under a publisher that outruns its consumer (manual ack, prefetch 100), 16 B"
ARGS[l]="-s 16 -q 100 -A 10 --max-length 10000"
TITLE[m]="(m) 1p/1c, 1 MiB bodies, transient, autoack"
ARGS[m]="-s 1048576 -a"
TITLE[n]="(n) 1p/1c, 16 MiB bodies, transient, autoack"
ARGS[n]="-s 16777216 -a"

# run_load BROKER ID: one load scenario on a fresh broker; JSON to RESULTS/BROKER-ID.json.
run_load() {
    local broker="$1" id="$2" out="$RESULTS/$1-$2.json"
    start_broker "$broker"
    log "$broker: ${TITLE[$id]}"
    # shellcheck disable=SC2086
    if ! timeout $((SECS + 120)) "${LOAD_PIN[@]}" "$PERF" "${PERF_TLS[@]}" -h "$BROKER_URI" -z "$SECS" --json \
        --broker-pid "$BROKER_PID" ${ARGS[$id]} >"$out" 2>"$RESULTS/$1-$2.err"; then
        log "$broker $id failed: $(tail -n 3 "$RESULTS/$1-$2.err")"
        error_json "$RESULTS/$1-$2.err" >"$out"
    fi
    # VmHWM now is this scenario's peak: the broker was started for it.
    echo "{\"hwm_kb\":$(proc_status_kb "$BROKER_PID" VmHWM)}" >"$RESULTS/$1-$2.hwm.json"
    stop_broker "$broker"
}

# run_idle BROKER: (i) start-up time and idle RSS, then (h) idle connections, on one process.
run_idle() {
    local broker="$1"
    start_broker "$broker"
    echo "$READY_JSON" >"$RESULTS/$broker-ready.json"
    sleep "$IDLE_RSS_SETTLE_SECS"
    echo "{\"idle_rss_kb\":$(proc_status_kb "$BROKER_PID" VmRSS)}" >"$RESULTS/$broker-idle.json"
    if [[ " $ONLY " == *" h "* ]]; then
        log "$broker: (h) $IDLE_CONNECTIONS idle connections (fd limit $FD_LIMIT)"
        timeout 600 "${LOAD_PIN[@]}" "$PERF" -h "$BROKER_URI" --idle-connections "$IDLE_CONNECTIONS" \
            --broker-pid "$BROKER_PID" >"$RESULTS/$broker-h.json" 2>"$RESULTS/$broker-h.err" ||
            error_json "$RESULTS/$broker-h.err" >"$RESULTS/$broker-h.json"
    fi
    stop_broker "$broker"
}

# run_many BROKER: (o) many queues declared and bound, then the idle broker, on one process.
run_many() {
    local broker="$1"
    start_broker "$broker"
    log "$broker: (o) $MANY_QUEUES queues (every $MANY_DURABLE_EVERY-th durable), then ${MANY_IDLE_SECS} s idle"
    timeout 3600 "${LOAD_PIN[@]}" "$PERF" -h "$BROKER_URI" --declare-queues "$MANY_QUEUES" \
        --durable-every "$MANY_DURABLE_EVERY" --idle-secs "$MANY_IDLE_SECS" \
        --broker-pid "$BROKER_PID" >"$RESULTS/$broker-o.json" 2>"$RESULTS/$broker-o.err" ||
        error_json "$RESULTS/$broker-o.err" >"$RESULTS/$broker-o.json"
    stop_broker "$broker"
}

BROKERS=(coney)
[ "$COMPARE" = yes ] && BROKERS+=(rabbitmq)
LOADS=()
for id in a b c d e f1 f2 g j k l m n; do
    [[ " $ONLY " == *" ${id:0:1} "* ]] && LOADS+=("$id")
done

# Brokers alternate scenario by scenario, so a change in what else runs on the machine
# affects both sides of a comparison alike.
if [[ " $ONLY " == *" h "* ]] || [[ " $ONLY " == *" i "* ]]; then
    for broker in "${BROKERS[@]}"; do run_idle "$broker"; done
fi
for id in "${LOADS[@]}"; do
    for broker in "${BROKERS[@]}"; do run_load "$broker" "$id"; done
done
if [[ " $ONLY " == *" o "* ]]; then
    for broker in "${BROKERS[@]}"; do run_many "$broker"; done
fi

# --- report --------------------------------------------------------------------------------

mkdir -p "$OUT_DIR"
MD="$OUT_DIR/results-$STAMP.md"
RMQ_VERSION="$(dpkg-query -W -f '${Version}' rabbitmq-server 2>/dev/null || echo n/a)"
ERL_VERSION="$(dpkg-query -W -f '${Version}' erlang-base 2>/dev/null || echo n/a)"
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"
export RESULTS SECS IDLE_CONNECTIONS MANY_QUEUES MANY_IDLE_SECS PINNING FD_LIMIT STAMP RMQ_VERSION ERL_VERSION COMPARE
export LOAD_BEFORE LOAD_AFTER TLS
export CPU_MODEL="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
export CPUS="$(nproc)" CONEY_REV="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo n/a)"
[ -n "${CONEY_GIVEN:-}" ] && CONEY_REV="$CONEY (given)"
export LOAD_IDS="${LOADS[*]}" TITLES="$(for id in "${LOADS[@]}"; do echo "$id=${TITLE[$id]}"; done)"
python3 - >"$MD" <<'PY'
import json, os

res = os.environ["RESULTS"]
compare = os.environ["COMPARE"] == "yes"
brokers = ["coney"] + (["rabbitmq"] if compare else [])
names = {"coney": "coney", "rabbitmq": "RabbitMQ"}
titles = dict(l.split("=", 1) for l in os.environ["TITLES"].splitlines() if "=" in l)

def load(b, what):
    try:
        with open(f"{res}/{b}-{what}.json") as f:
            r = json.loads(f.read().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        return None
    try:
        with open(f"{res}/{b}-{what}.hwm.json") as f:
            r.update(json.load(f))
    except (OSError, ValueError):
        pass
    return r

def num(v, digits=0):
    if v is None:
        return "n/a"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"

def ratio(c, r):
    if c is None or r is None or r == 0:
        return "n/a"
    return f"{c / r:.3g}x"

def table(rows):
    head = ["metric"] + [names[b] for b in brokers] + (["coney / RabbitMQ"] if compare else [])
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, vals, digits in rows:
        cells = [num(v, digits) for v in vals]
        if compare:
            cells.append(ratio(vals[0], vals[1]))
        out.append("| " + " | ".join([label] + cells) + " |")
    return "\n".join(out)

print(f"# coney benchmark, {os.environ['STAMP']}\n")
print(f"- coney {os.environ['CONEY_REV']}; RabbitMQ {os.environ['RMQ_VERSION'] if compare else 'not run'}"
      + (f" (Erlang {os.environ['ERL_VERSION']})" if compare else ""))
print(f"- {os.environ['CPUS']} x {os.environ['CPU_MODEL']}; {os.environ['PINNING']}; open files limit {os.environ['FD_LIMIT']}")
print(f"- {os.environ['SECS']} s per load scenario, each on a freshly started broker; load generator: coney-perf"
      + (" over TLS (amqps, rustls client; EC P-256 server certificate)" if os.environ.get("TLS") else ""))
if compare and os.environ["PINNING"].startswith("broker on CPU 0"):
    print("- pinned to one CPU, RabbitMQ's Erlang VM runs one scheduler (as coney runs one thread)")
print(f"- machine load average (1, 5, 15 min) before: {os.environ['LOAD_BEFORE']}, after: {os.environ['LOAD_AFTER']}"
      f" (above {os.environ['CPUS']} means other processes competed for the CPUs)")
print("- msg/s: published and delivered (consumer side) over the window; latency: publish to"
      " consumer receipt, including any backlog; CPU: broker user+sys seconds per million"
      " messages moved (the larger of published and delivered); peak RSS: VmHWM of the broker"
      " process (beam.smp for RabbitMQ)\n")

for sid in os.environ["LOAD_IDS"].split():
    rs = [load(b, sid) for b in brokers]
    print(f"## {titles.get(sid, sid)}\n")
    errs = [f"{names[b]}: {r['error']}" for b, r in zip(brokers, rs) if r and "error" in r]
    ok = [r if r and "error" not in r else None for r in rs]
    def pick(f):
        return [f(r) if r else None for r in ok]
    def cpu_per_m(r):
        moved = max(r["sent"], r["received"])
        b = r.get("broker") or {}
        return b.get("cpu_s", 0) / (moved / 1e6) if moved else None
    rows = [
        ("published msg/s", pick(lambda r: r["send_rate"]), 0),
        ("delivered msg/s", pick(lambda r: r["recv_rate"]), 0),
        ("latency p50 (us)", pick(lambda r: r["latency_us"]["p50"]), 0),
        ("latency p99 (us)", pick(lambda r: r["latency_us"]["p99"]), 0),
        ("broker CPU s / M msgs", pick(cpu_per_m), 2),
        ("broker peak RSS (MiB)", pick(lambda r: r["hwm_kb"] / 1024 if r.get("hwm_kb") else None), 1),
    ]
    if sid.startswith("c"):
        rows.append(("publisher confirms/s", pick(lambda r: r["confirmed"] / r["duration_s"]), 0))
        rows.append(("broker disk writes (MiB)",
                     pick(lambda r: (r.get("broker") or {}).get("disk_write_bytes", 0) / 2**20), 1))
    print(table(rows))
    notes = []
    c0 = ok[0]
    if sid.startswith("c") and c0:
        written = (c0.get("broker") or {}).get("disk_write_bytes", 0)
        # 1 KiB bodies: a store writes at least a good part of what was published.
        if written < 0.25 * c0["sent"] * 1024:
            notes.append(f"coney: **store pending** — it wrote {written / 2**20:.1f} MiB to disk for"
                         f" {c0['sent'] * 1024 / 2**20:.0f} MiB of persistent messages, so they were held"
                         " in memory only (not comparable to RabbitMQ's disk writes)")
    client = [f"{names[b]} {r['client_cpu_s']:.1f} s" for b, r in zip(brokers, ok) if r]
    if client:
        notes.append(f"load generator CPU over the window: {', '.join(client)} (of {os.environ['SECS']} s on one CPU)")
    notes += errs
    for n in notes:
        print(f"\n- {n}")
    print()

if any(load(b, "h") or load(b, "ready") for b in brokers):
    print(f"## (h) idle connections with one channel each, (i) idle broker\n")
    hs = [load(b, "h") for b in brokers]
    rd = [load(b, "ready") for b in brokers]
    idle = [load(b, "idle") for b in brokers]
    def g(xs, f):
        out = []
        for x in xs:
            try:
                out.append(f(x) if x and "error" not in x else None)
            except (KeyError, TypeError):
                out.append(None)
        return out
    rows = [
        ("(i) start to TCP accept (ms)", g(rd, lambda r: r["tcp_accept_ms"]), 1),
        ("(i) start to AMQP open-ok (ms)", g(rd, lambda r: r["amqp_open_ms"]), 1),
        ("(i) idle RSS (MiB)", g(idle, lambda r: r["idle_rss_kb"] / 1024), 1),
        ("(h) connections opened", g(hs, lambda r: r["opened"]), 0),
        ("(h) time to open them (s)", g(hs, lambda r: r["open_s"]), 2),
        ("(h) RSS with them open (MiB)", g(hs, lambda r: r["rss_after_kb"] / 1024), 1),
        ("(h) RSS per connection (KiB)", g(hs, lambda r: r["bytes_per_connection"] / 1024), 1),
    ]
    print(table(rows))
    for b, h in zip(brokers, hs):
        if h and "error" not in h and h["opened"] < h["wanted"]:
            print(f"\n- {names[b]} accepted only {h['opened']} of {h['wanted']} connections: {h['first_error']}")
        elif h and "error" in h:
            print(f"\n- {names[b]}: {h['error']}")
    print()

ls = [load(b, "o") for b in brokers]
if any(ls):
    print(f"## (o) {int(os.environ['MANY_QUEUES']):,} queues, each bound to amq.direct, then idle\n")
    ok = [r if r and "error" not in r else None for r in ls]
    def pick(f):
        return [f(r) if r else None for r in ok]
    rows = [
        ("durable queues among them", pick(lambda r: r["durable"]), 0),
        ("declare + bind pairs/s (pipelined)", pick(lambda r: r["pairs_per_s"]), 0),
        ("RSS after declaring (MiB)", pick(lambda r: r["rss_after_kb"] / 1024 if r.get("rss_after_kb") else None), 1),
        ("RSS per queue (bytes)", pick(lambda r: r["bytes_per_queue"]), 0),
        (f"broker CPU over {os.environ['MANY_IDLE_SECS']} s idle (ms)", pick(lambda r: r["idle_cpu_ms"]), 0),
    ]
    print(table(rows))
    for b, r in zip(brokers, ls):
        if r and "error" in r:
            print(f"\n- {names[b]}: {r['error']}")
    print()
PY
cat "$MD"
log "results written to $MD"
