# shellcheck shell=bash
# Helpers sourced by the scripts that run a broker (test.sh, test-rpm.sh, soak.sh, bench.sh,
# profile.sh, rabbitmq.sh): free loopback ports, waiting for a port or for a process to exit,
# starting and stopping one coney per script (its pid in CONEY_PID), and /proc status fields.
# Every wait is bounded; servers listen on 127.0.0.1 only. Safe under `set -euo pipefail`.
#
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

LIB_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CONEY_PID="${CONEY_PID:-}"

# free_port: prints a loopback TCP port that is free now (the Python helper's, the one copy).
free_port() {
    python3 "$LIB_ROOT/tests/lib/brokerlib.py" free-port
}

# port_open PORT: 0 if something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" >/dev/null 2>&1
}

# pid_alive PID: 0 while process PID exists.
pid_alive() {
    [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null
}

# wait_port PORT SECONDS [PID]: 0 once 127.0.0.1:PORT accepts; 1 after SECONDS, or as soon
# as process PID (the server, if given) has exited.
wait_port() {
    local port="$1" tenths=$(($2 * 10)) pid="${3:-}" i
    for i in $(seq 1 "$tenths"); do
        if [ -n "$pid" ] && ! pid_alive "$pid"; then return 1; fi
        port_open "$port" && return 0
        sleep 0.1
    done
    return 1
}

# wait_gone PID SECONDS: 0 once process PID has exited (any process, child or not).
wait_gone() {
    local i
    for i in $(seq 1 $(($2 * 10))); do
        pid_alive "$1" || return 0
        sleep 0.1
    done
    ! pid_alive "$1"
}

# wait_exit PID SECONDS: waits for the child PID to exit and reaps it; sets EXIT_CODE to its
# exit status (or 'running', returning 1, after SECONDS).
wait_exit() {
    EXIT_CODE=running
    wait_gone "$1" "$2" || return 1
    EXIT_CODE=0
    wait "$1" 2>/dev/null || EXIT_CODE=$?
}

# coney_spawn LOG CMD...: runs CMD (coney, or taskset/env exec'ing it) in the background,
# stdin from /dev/null, stdout and stderr appended to LOG; sets CONEY_PID.
coney_spawn() {
    local log="$1"
    shift
    "$@" </dev/null >>"$log" 2>&1 &
    CONEY_PID=$!
}

# coney_start PORT SECONDS LOG CMD...: coney_spawn, then waits until it accepts on
# 127.0.0.1:PORT. After SECONDS, or if it exits first, says why with the tail of LOG (stderr),
# stops it and returns 1.
coney_start() {
    local port="$1" secs="$2" log="$3"
    shift 3
    coney_spawn "$log" "$@"
    wait_port "$port" "$secs" "$CONEY_PID" && return 0
    if pid_alive "$CONEY_PID"; then
        echo "coney did not accept connections on 127.0.0.1:$port within ${secs}s" >&2
    else
        wait_exit "$CONEY_PID" 1 || true
        echo "coney exited (status $EXIT_CODE) before accepting connections on 127.0.0.1:$port" >&2
    fi
    echo "---- tail of coney log ($log)" >&2
    tail -n 50 "$log" >&2 || true
    coney_stop || true
    return 1
}

# coney_stop [SECONDS]: SIGTERM to CONEY_PID, SIGKILL if it has not exited after SECONDS
# (default 10); returns its exit status (non-zero when it had to be killed). Clears CONEY_PID.
coney_stop() {
    local secs="${1:-10}" pid="$CONEY_PID"
    [ -n "$pid" ] || return 0
    CONEY_PID=""
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_exit "$pid" "$secs"; then
        echo "coney (pid $pid) did not exit within ${secs}s of SIGTERM; SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
        wait_exit "$pid" 10 || return 1
    fi
    return "$EXIT_CODE"
}

# proc_status_kb PID FIELD: prints a kB field of /proc/PID/status (e.g. VmRSS, VmHWM), or
# "null" when there is none.
proc_status_kb() {
    local v
    v="$(awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null)" || true
    echo "${v:-null}"
}
