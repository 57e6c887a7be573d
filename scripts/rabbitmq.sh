#!/usr/bin/env bash
# Run a private, throw-away RabbitMQ node (Debian's rabbitmq-server package)
# as the current user, without systemd, entirely inside a scratch directory.
#
#   scripts/rabbitmq.sh install           install rabbitmq-server via apt if missing
#   scripts/rabbitmq.sh start PORT DIR    start a node on 127.0.0.1:PORT using DIR,
#                                         wait (bounded) until AMQP accepts, print
#                                         the beam.smp OS pid on stdout
#   scripts/rabbitmq.sh stop DIR          stop that node and its private epmd (bounded)
#   scripts/rabbitmq.sh status DIR        exit 0 (and print the pid) if the node of DIR runs
#   scripts/rabbitmq.sh ctl DIR CMD...    rabbitmqctl CMD... against that node
#
# Everything but the pid printed by `start` goes to stderr.  The node gets a
# unique name, its own epmd on a free loopback port, its own distribution port,
# its own erlang cookie (HOME=DIR/home), no plugins (unless RABBITMQ_PLUGINS names
# some), and logs in DIR/log.
# Default user guest/guest works from loopback.
#
# Environment knobs:
#   RABBITMQ_START_TIMEOUT  seconds to wait for the AMQP port (default 60)
#   RABBITMQ_STOP_TIMEOUT   seconds to wait for a graceful stop (default 30)
#   RABBITMQ_PLUGINS        plugins to enable at start, space-separated (default none), e.g.
#                           "rabbitmq_management rabbitmq_prometheus"
#   RABBITMQ_MGMT_PORT      management HTTP port on 127.0.0.1 (default PORT+10000)
#   RABBITMQ_PROMETHEUS_PORT  prometheus HTTP port on 127.0.0.1 (default PORT+10100)
#   RABBITMQ_EXTRA_CONF     lines appended to the node's rabbitmq.conf (e.g. listeners.ssl.*)
#   RABBITMQ_KEEP_DATA      1: restart the node of DIR with its data (same node name, mnesia
#                           and message store kept), e.g. after `stop` in a restart test
# The two HTTP ports are written to the config only when their plugin is enabled, are
# recorded in DIR/mgmt.port and DIR/prometheus.port, and `start` waits for them too.
set -euo pipefail

RMQ_BIN="${RMQ_BIN:-/usr/lib/rabbitmq/bin/rabbitmq-server}"
START_TIMEOUT="${RABBITMQ_START_TIMEOUT:-60}"
STOP_TIMEOUT="${RABBITMQ_STOP_TIMEOUT:-30}"

log() { echo "rabbitmq.sh: $*" >&2; }
die() { log "$*"; exit 1; }

# --- helpers ---------------------------------------------------------------

# port_open, free_port, pid_alive, wait_gone
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# pid_matches PID STRING: the process's command line contains STRING
# (guards against signalling a recycled pid).
pid_matches() {
    local pid="$1" want="$2"
    pid_alive "$pid" || return 1
    [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$want"
}

abs_dir() { mkdir -p "$1" && (cd "$1" && pwd); }

# --- install ---------------------------------------------------------------

cmd_install() {
    if [ -x "$RMQ_BIN" ]; then
        log "rabbitmq-server already installed ($RMQ_BIN)"
        return 0
    fi
    [ "$(id -u)" = 0 ] || die "install needs root (apt-get)"
    # policy-rc.d answering 101 ("action forbidden") keeps the package's
    # maintainer scripts from starting a system rabbitmq-server / epmd.
    # An existing policy-rc.d is put back afterwards.
    local prc=/usr/sbin/policy-rc.d backup=""
    if [ -e "$prc" ]; then
        backup="$(mktemp /tmp/policy-rc.d.XXXXXX)"
        cp -p "$prc" "$backup"
    fi
    printf '#!/bin/sh\nexit 101\n' >"$prc"
    chmod +x "$prc"
    local rc=0
    (
        export DEBIAN_FRONTEND=noninteractive
        timeout 900 apt-get update -q >&2
        timeout 1800 apt-get install -y -q --no-install-recommends rabbitmq-server >&2
    ) || rc=$?
    if [ -n "$backup" ]; then
        cp -p "$backup" "$prc" && rm -f "$backup"
    else
        rm -f "$prc"
    fi
    [ "$rc" = 0 ] || die "apt-get install rabbitmq-server failed (rc=$rc)"
    [ -x "$RMQ_BIN" ] || die "$RMQ_BIN still missing after install"
    log "installed rabbitmq-server"
}

# --- start -----------------------------------------------------------------

cmd_start() {
    [ $# -eq 2 ] || die "usage: $0 start PORT DIR"
    local port="$1" dir
    case "$port" in ''|*[!0-9]*) die "bad port: $port" ;; esac
    [ -x "$RMQ_BIN" ] || die "$RMQ_BIN missing: run '$0 install' first"
    dir="$(abs_dir "$2")"

    if [ -f "$dir/pid" ] && pid_matches "$(cat "$dir/pid")" "$dir"; then
        die "a node from $dir is already running (pid $(cat "$dir/pid")); stop it first"
    fi
    if port_open "$port"; then
        die "port $port on 127.0.0.1 is already in use"
    fi

    if [ "${RABBITMQ_KEEP_DATA:-0}" = 1 ] && [ -f "$dir/nodename" ]; then
        rm -f "$dir/pid" "$dir/epmd.pid" "$dir/rabbitmq.pid"
    else
        rm -rf "$dir/mnesia" "$dir/log" "$dir/home"
        rm -f "$dir/pid" "$dir/epmd.pid" "$dir/rabbitmq.pid" "$dir/nodename"
    fi
    mkdir -p "$dir/mnesia" "$dir/log" "$dir/home"

    local node epmd_port dist_port
    node="coney_rmq_${port}_$$@localhost"
    [ -f "$dir/nodename" ] && node="$(cat "$dir/nodename")"
    epmd_port="$(free_port)"
    dist_port="$(free_port)"
    while [ "$dist_port" = "$epmd_port" ] || [ "$dist_port" = "$port" ]; do dist_port="$(free_port)"; done
    echo "$node" >"$dir/nodename"
    echo "$epmd_port" >"$dir/epmd.port"
    echo "$port" >"$dir/amqp.port"

    local plugins="${RABBITMQ_PLUGINS:-}" mgmt_port="" prom_port=""
    echo "[$(echo $plugins | tr ' ' ',')]." >"$dir/enabled_plugins"
    rm -f "$dir/mgmt.port" "$dir/prometheus.port"
    cat >"$dir/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$port
loopback_users.guest = true
disk_free_limit.absolute = 10MB
log.console = false
log.file.level = info
CONF
    if [ -n "${RABBITMQ_EXTRA_CONF:-}" ]; then
        printf '%s\n' "$RABBITMQ_EXTRA_CONF" >>"$dir/rabbitmq.conf"
    fi
    case " $plugins " in *" rabbitmq_management "*)
        mgmt_port="${RABBITMQ_MGMT_PORT:-$((port + 10000))}"
        port_open "$mgmt_port" && die "management port $mgmt_port on 127.0.0.1 is already in use"
        printf 'management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = %s\n' "$mgmt_port" >>"$dir/rabbitmq.conf"
        # Statistics every second (default 5 s), so tests that await a count wait less.
        echo "collect_statistics_interval = 1000" >>"$dir/rabbitmq.conf"
        echo "$mgmt_port" >"$dir/mgmt.port" ;;
    esac
    case " $plugins " in *" rabbitmq_prometheus "*)
        prom_port="${RABBITMQ_PROMETHEUS_PORT:-$((port + 10100))}"
        port_open "$prom_port" && die "prometheus port $prom_port on 127.0.0.1 is already in use"
        printf 'prometheus.tcp.ip = 127.0.0.1\nprometheus.tcp.port = %s\n' "$prom_port" >>"$dir/rabbitmq.conf"
        echo "$prom_port" >"$dir/prometheus.port" ;;
    esac

    # A private epmd on a free loopback port, in its own session.
    setsid epmd -address 127.0.0.1 -port "$epmd_port" </dev/null >"$dir/log/epmd.log" 2>&1 &
    local epmd_pid=$!
    echo "$epmd_pid" >"$dir/epmd.pid"
    local i
    for i in $(seq 1 100); do
        port_open "$epmd_port" && break
        pid_alive "$epmd_pid" || break
        sleep 0.1
    done
    if ! port_open "$epmd_port"; then
        kill "$epmd_pid" 2>/dev/null || true
        die "private epmd did not come up on port $epmd_port (see $dir/log/epmd.log)"
    fi

    # The node itself.  setsid makes it a session/process-group leader, and
    # since a background job of a non-interactive shell is not a group leader,
    # setsid does not fork: rabbitmq-server -> erl -> erlexec all exec, so $!
    # ends up being beam.smp itself.
    (
        cd "$dir"
        export HOME="$dir/home"
        export RABBITMQ_HOME=/usr/lib/rabbitmq/lib/rabbitmq_server-"$(ls /usr/lib/rabbitmq/lib | sed -n 's/^rabbitmq_server-//p' | head -n1)"
        [ -d "$RABBITMQ_HOME" ] || unset RABBITMQ_HOME
        export RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf"   # (absent: ignore /etc one)
        export RABBITMQ_NODENAME="$node"
        export RABBITMQ_USE_LONGNAME=false
        export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
        export RABBITMQ_NODE_PORT="$port"
        export RABBITMQ_DIST_PORT="$dist_port"
        export RABBITMQ_MNESIA_BASE="$dir/mnesia"
        export RABBITMQ_LOG_BASE="$dir/log"
        export RABBITMQ_PID_FILE="$dir/rabbitmq.pid"
        export RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
        export RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf"
        export RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config"
        export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1} -start_epmd false"
        export ERL_EPMD_PORT="$epmd_port"
        export ERL_EPMD_ADDRESS=127.0.0.1
        exec setsid "$RMQ_BIN" </dev/null >"$dir/log/stdout.log" 2>&1
    ) &
    local pid=$!
    echo "$pid" >"$dir/pid"

    # Wait (bounded) for the AMQP port and the plugins' HTTP ports.
    local deadline=$(( SECONDS + START_TIMEOUT )) ok=0 p want
    while [ "$SECONDS" -lt "$deadline" ]; do
        if ! pid_alive "$pid"; then break; fi
        want=0
        for p in "$port" $mgmt_port $prom_port; do port_open "$p" || want=1; done
        if [ "$want" = 0 ]; then ok=1; break; fi
        sleep 0.2
    done
    if [ "$ok" != 1 ]; then
        log "node did not accept on 127.0.0.1:$port $mgmt_port $prom_port within ${START_TIMEOUT}s"
        tail -n 30 "$dir/log/stdout.log" >&2 2>/dev/null || true
        cmd_stop "$dir" || true
        exit 1
    fi

    # Make sure we report beam.smp's pid (normally $! already is).
    local beam="$pid" comm
    comm="$(cat "/proc/$pid/comm" 2>/dev/null || true)"
    if [ "$comm" != "beam.smp" ]; then
        if [ -s "$dir/rabbitmq.pid" ]; then
            beam="$(tr -dc '0-9' <"$dir/rabbitmq.pid")"
        else
            beam="$(pgrep -s "$pid" -x beam.smp | head -n1 || true)"
        fi
        [ -n "$beam" ] || die "could not determine beam.smp pid"
        echo "$pid" >"$dir/launcher.pid"
        echo "$beam" >"$dir/pid"
    fi
    log "node $node up on 127.0.0.1:$port (beam.smp pid $beam, epmd $epmd_port, dist $dist_port${mgmt_port:+, management $mgmt_port}${prom_port:+, prometheus $prom_port})"
    echo "$beam"
}

# --- stop ------------------------------------------------------------------

kill_tree() { # pid signal : signal pid's process group (it is a session leader) and pid
    local pid="$1" sig="$2"
    kill -s "$sig" -- "-$pid" 2>/dev/null || true
    kill -s "$sig" "$pid" 2>/dev/null || true
}

cmd_stop() {
    [ $# -eq 1 ] || die "usage: $0 stop DIR"
    [ -d "$1" ] || { log "no such dir $1 (nothing to stop)"; return 0; }
    local dir
    dir="$(cd "$1" && pwd)"
    local pid="" epmd_pid="" launcher=""
    [ -f "$dir/pid" ] && pid="$(tr -dc '0-9' <"$dir/pid")"
    [ -f "$dir/epmd.pid" ] && epmd_pid="$(tr -dc '0-9' <"$dir/epmd.pid")"
    [ -f "$dir/launcher.pid" ] && launcher="$(tr -dc '0-9' <"$dir/launcher.pid")"

    local p
    for p in "$pid" "$launcher"; do
        [ -n "$p" ] || continue
        if pid_matches "$p" "$dir" || pid_matches "$p" rabbit; then
            # SIGTERM makes the Erlang VM run init:stop(): a graceful shutdown.
            kill -TERM "$p" 2>/dev/null || true
            if ! wait_gone "$p" "$STOP_TIMEOUT"; then
                log "node pid $p still alive after ${STOP_TIMEOUT}s, SIGKILL"
                kill_tree "$p" KILL
                wait_gone "$p" 10 || log "pid $p would not die"
            fi
            # leftovers of its process group (erl_child_setup, inet_gethost)
            kill_tree "$p" KILL
        fi
    done
    if [ -n "$epmd_pid" ] && pid_matches "$epmd_pid" epmd; then
        kill -TERM "$epmd_pid" 2>/dev/null || true
        wait_gone "$epmd_pid" 5 || kill -KILL "$epmd_pid" 2>/dev/null || true
        wait_gone "$epmd_pid" 5 || log "epmd pid $epmd_pid would not die"
    fi
    rm -f "$dir/pid" "$dir/epmd.pid" "$dir/launcher.pid"
    return 0
}

# Environment under which the Erlang CLI tools reach the node of DIR.
node_env() {
    local dir="$1"
    [ -f "$dir/nodename" ] && [ -f "$dir/epmd.port" ] || die "$dir has no node (not started?)"
    export HOME="$dir/home"
    export RABBITMQ_NODENAME
    RABBITMQ_NODENAME="$(cat "$dir/nodename")"
    export ERL_EPMD_PORT
    ERL_EPMD_PORT="$(cat "$dir/epmd.port")"
    export RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf"
    export RABBITMQ_MNESIA_BASE="$dir/mnesia"
    export RABBITMQ_LOG_BASE="$dir/log"
    export RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
    export RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf"
}

cmd_ctl() { # DIR ARGS... : rabbitmqctl against the node of DIR
    [ $# -ge 2 ] || die "usage: $0 ctl DIR COMMAND [ARGS...]"
    local dir
    dir="$(cd "$1" && pwd)"; shift
    node_env "$dir"
    exec timeout 60 "$(dirname "$RMQ_BIN")/rabbitmqctl" -n "$RABBITMQ_NODENAME" "$@"
}

cmd_status() {
    [ $# -eq 1 ] || die "usage: $0 status DIR"
    local dir pid
    dir="$(cd "$1" 2>/dev/null && pwd)" || exit 1
    [ -f "$dir/pid" ] || exit 1
    pid="$(tr -dc '0-9' <"$dir/pid")"
    pid_matches "$pid" "$dir" || pid_matches "$pid" rabbit || exit 1
    echo "$pid"
}

case "${1:-}" in
    install) shift; cmd_install "$@" ;;
    start) shift; cmd_start "$@" ;;
    stop) shift; cmd_stop "$@" ;;
    status) shift; cmd_status "$@" ;;
    ctl) shift; cmd_ctl "$@" ;;
    *) echo "usage: $0 install | start PORT DIR | stop DIR | status DIR | ctl DIR CMD..." >&2; exit 2 ;;
esac
