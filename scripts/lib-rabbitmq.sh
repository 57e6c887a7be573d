# shellcheck shell=bash
# Sourced by scripts/bench.sh: a private, throw-away RabbitMQ node (Debian's rabbitmq-server)
# run as the current user without systemd, everything inside one scratch directory, with its
# own epmd on a free loopback port so it never meets another node.
#
#   rmq_install             install rabbitmq-server with apt if it is missing (root only)
#   rmq_start PORT DIR [CPU] start a node on 127.0.0.1:PORT (pinned to CPU if given); returns
#                           at once and sets RMQ_PID (beam.smp once it has exec'd)
#   rmq_beam_pid DIR        print the beam.smp pid of the node of DIR
#   rmq_stop DIR            stop that node and its epmd, bounded in time
#
# Same interface idea as scripts/rabbitmq.sh on the scenarios branch, with start split from
# waiting so the caller can time start-up with its own prober.

RMQ_SERVER="${RMQ_SERVER:-/usr/lib/rabbitmq/bin/rabbitmq-server}"
RMQ_STOP_TIMEOUT_SECS="${RMQ_STOP_TIMEOUT_SECS:-30}"

rmq_log() { echo "lib-rabbitmq: $*" >&2; }

rmq_available() { [ -x "$RMQ_SERVER" ]; }

rmq_install() {
    rmq_available && return 0
    if [ "$(id -u)" != 0 ]; then
        rmq_log "rabbitmq-server is not installed and installing needs root"
        return 1
    fi
    # policy-rc.d exit 101 keeps the package from starting a system node during install.
    local prc=/usr/sbin/policy-rc.d created=0 rc=0
    if [ ! -e "$prc" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$prc"
        chmod +x "$prc"
        created=1
    fi
    DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -q --no-install-recommends \
        rabbitmq-server >&2 || rc=$?
    [ "$created" = 1 ] && rm -f "$prc"
    [ "$rc" = 0 ] && rmq_available
}

rmq_free_port() {
    python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

rmq_port_open() { timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" >/dev/null 2>&1; }

# rmq_pid_of DIR NAME WORD: a live pid recorded in DIR/NAME whose command line mentions WORD
# (guards against signalling a recycled pid).
rmq_pid_of() {
    local f="$1/$2" pid
    [ -f "$f" ] || return 1
    pid="$(tr -dc '0-9' <"$f")"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$3" || return 1
    echo "$pid"
}

rmq_start() {
    local port="$1" dir="$2" cpu="${3:-}"
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    rm -rf "$dir/mnesia" "$dir/log" "$dir/home"
    mkdir -p "$dir/mnesia" "$dir/log" "$dir/home"
    local epmd_port dist_port
    epmd_port="$(rmq_free_port)"
    dist_port="$(rmq_free_port)"
    : >"$dir/enabled_plugins"
    cat >"$dir/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$port
loopback_users.guest = true
disk_free_limit.absolute = 10MB
log.console = false
log.file.level = warning
CONF
    # The epmd the node registers with; its own session so stopping it is precise.
    setsid epmd -address 127.0.0.1 -port "$epmd_port" </dev/null >"$dir/log/epmd.log" 2>&1 &
    echo $! >"$dir/epmd.pid"
    local i
    for i in $(seq 1 50); do rmq_port_open "$epmd_port" && break; sleep 0.1; done
    local pin=()
    [ -n "$cpu" ] && pin=(taskset -c "$cpu")
    (
        cd "$dir"
        export HOME="$dir/home"
        export RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf"
        export RABBITMQ_NODENAME="rabbit-bench-$port-$$@localhost"
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
        # The launcher stays as a shell that turns SIGTERM into a clean stop; beam.smp is its
        # child in the session setsid creates (setsid does not fork in a background job).
        exec "${pin[@]}" setsid "$RMQ_SERVER" </dev/null >"$dir/log/stdout.log" 2>&1
    ) &
    RMQ_PID=$!
    echo "$RMQ_PID" >"$dir/pid"
}

# rmq_launcher_pid DIR: the session leader started by rmq_start, if still alive.
rmq_launcher_pid() { rmq_pid_of "$1" pid rabbitmq; }

rmq_beam_pid() {
    local dir pid beam
    dir="$(cd "$1" && pwd)"
    pid="$(rmq_launcher_pid "$dir")" || return 1
    if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = beam.smp ]; then
        echo "$pid"
        return 0
    fi
    beam="$(pgrep -s "$pid" -x beam.smp | head -n1)"
    [ -n "$beam" ] && echo "$beam"
}

rmq_stop() {
    [ -d "$1" ] || return 0
    local dir pid epmd i
    dir="$(cd "$1" && pwd)"
    if pid="$(rmq_launcher_pid "$dir")"; then
        # SIGTERM makes the Erlang VM run init:stop(), a graceful shutdown.
        kill -TERM "$pid" 2>/dev/null
        for i in $(seq 1 $((RMQ_STOP_TIMEOUT_SECS * 10))); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            rmq_log "node $pid still alive after ${RMQ_STOP_TIMEOUT_SECS}s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null
        fi
        # Helpers of the node's session (erl_child_setup, inet_gethost) go with it.
        kill -KILL -- "-$pid" 2>/dev/null
    fi
    if epmd="$(rmq_pid_of "$dir" epmd.pid epmd)"; then
        kill -TERM "$epmd" 2>/dev/null
        for i in $(seq 1 50); do kill -0 "$epmd" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$epmd" 2>/dev/null
    fi
    rm -f "$dir/pid" "$dir/epmd.pid"
    return 0
}
