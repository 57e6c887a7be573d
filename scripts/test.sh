#!/usr/bin/env bash
# coney's single test command.
#
#   scripts/test.sh [options]
#
# Steps (each can be skipped):
#   build      cargo build --release            (target/release/coney)
#   cargo      cargo test --release             (unit + integration tests, the hostile-client
#                                               suite in its own binary, tests/hostile)
#   pyenv      scripts/pyenv.sh                 (.venv/pika1, .venv/pika013)
#   coney      start target/release/coney on a free loopback port and run
#              tests/scenarios/run.py (both pika flavours) against it
#   durability tests/durability/run.py: each test starts its own coney (own
#              port and data directory), stops it with SIGTERM or SIGKILL and
#              starts it again (pika 1.x clients; about a minute)
#   rabbitmq definitions  a private RabbitMQ (scripts/rabbitmq.sh install, then start): the
#              access-control tests of tests/amqp against it (access_*, proving they pin
#              RabbitMQ's behaviour) and tests/rabbitmq_definitions.rs (definitions round
#              trips between RabbitMQ and coney in both directions); about a minute
#   tls        scripts/test-tls.sh: tests/tls (amqps with pika and openssl s_client,
#              verify_peer, SASL EXTERNAL, a garbage-handshake flood beside a TLS canary)
#   rabbitmq   (only with --against-rabbitmq) the same scenario suite against
#              a private RabbitMQ started with scripts/rabbitmq.sh, to prove
#              the scenarios themselves are faithful; unless cargo tests are
#              skipped, also coneyctl's live tests against that node's management
#              API, every step checked through rabbitmqctl too (about 2 minutes;
#              `cargo test` runs coneyctl's other tests and reports these ignored)
#   shovel     scripts/test-shovel.sh: tests/shovel (shovels between coney and two private
#              RabbitMQ nodes with the shovel plugins, side by side, and the chaos runs;
#              about 3 minutes)
#   federation scripts/test-federation.sh: tests/federation (federated exchanges from a private
#              RabbitMQ upstream, each test against a RabbitMQ downstream with the federation
#              plugins and against coney; under 3 minutes)
#   mgmt       scripts/test-mgmt.sh: tests/mgmt (management API, Prometheus,
#              rabbitmqadmin) and tests/webui (the page in headless Chromium)
#              against coney's HTTP listeners; with --against-rabbitmq also
#              against RabbitMQ's management and prometheus plugins
#
# Options:
#   --against-rabbitmq   also run the scenarios against RabbitMQ
#   --rabbitmq-only      only pyenv + the scenarios against RabbitMQ (no cargo)
#   --only-scenarios     skip `cargo test` (still builds coney, unless --no-build)
#   --no-build           do not run cargo build (use the existing binary)
#   --no-cargo-test      skip `cargo test`
#   --no-coney           do not run the scenarios against coney
#   --no-durability      do not run the durability tests
#   --no-rpm             do not build and test the rpm (scripts/test-rpm.sh)
#   --no-fuzz            do not run the fuzzers briefly (scripts/fuzz.sh, FUZZ_SECONDS each)
#   --no-rabbitmq-definitions  skip the access and definitions tests against RabbitMQ
#   --no-tls             do not run the TLS tests (scripts/test-tls.sh)
#   --no-mgmt            do not run the management API and web page checks (scripts/test-mgmt.sh)
#   --no-shovel          do not run the shovel tests (scripts/test-shovel.sh)
#   --no-federation      do not run the federation tests (scripts/test-federation.sh)
#   --durability NAME    pass --only NAME to tests/durability/run.py (repeatable)
#   --scenario NAME      pass --only NAME to run.py (repeatable)
#   --flavour F          pass --flavour F to run.py (pika1 | pika013; repeatable)
#   -v, --verbose        verbose scenario output
#   -h, --help
# Environment:
#   TEST_SH_ARGS         extra options, as if given on the command line
#   KEEP_TMP=1           keep the scratch directory (logs, data) afterwards
#   SCENARIO_TIMEOUT     per-scenario time limit in seconds (default 60)
#   CARGO_TARGET_DIR     where cargo builds; coney is $CARGO_TARGET_DIR/release/coney
#                        (default target/release/coney)
#   CONEY_BIN            use this broker binary instead
#   CRASH_ROUNDS         rounds of the durability crash test (default 5)
#
# Exit status is non-zero if anything failed.  The last line is
# "total: N passed, M failed" (cargo tests + scenarios + durability; a step that failed
# without counting tests counts as one failure).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# free_port, coney_start, coney_stop
. scripts/lib.sh

# ---------------------------------------------------------------- options
do_build=1 do_cargo=1 do_pyenv=1 do_coney=1 do_durability=1 do_rpm=1 do_fuzz=1 do_mgmt=1 do_tls=1 do_rabbit=0 verbose=0
do_rmq_defs=1 do_shovel=1 do_federation=1
run_args=()
dur_args=()
# shellcheck disable=SC2206
set -- "$@" ${TEST_SH_ARGS:-}
while [ $# -gt 0 ]; do
    case "$1" in
        --against-rabbitmq) do_rabbit=1 ;;
        --rabbitmq-only) do_rabbit=1; do_build=0; do_cargo=0; do_coney=0; do_durability=0; do_rpm=0; do_fuzz=0; do_rmq_defs=0; do_mgmt=0; do_tls=0; do_shovel=0; do_federation=0 ;;
        --only-scenarios) do_cargo=0 ;;
        --no-build) do_build=0 ;;
        --no-cargo-test) do_cargo=0 ;;
        --no-coney) do_coney=0 ;;
        --no-durability) do_durability=0 ;;
        --no-rpm) do_rpm=0 ;;
        --no-fuzz) do_fuzz=0 ;;
        --no-rabbitmq-definitions) do_rmq_defs=0 ;;
        --no-mgmt) do_mgmt=0 ;;
        --no-tls) do_tls=0 ;;
        --no-shovel) do_shovel=0 ;;
        --no-federation) do_federation=0 ;;
        --durability) shift; dur_args+=(--only "${1:?--durability needs a name}") ;;
        --scenario) shift; run_args+=(--only "${1:?--scenario needs a name}") ;;
        --flavour) shift; run_args+=(--flavour "${1:?--flavour needs a value}") ;;
        -v|--verbose) verbose=1; run_args+=(-v); dur_args+=(-v) ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "test.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
run_args+=(--timeout "${SCENARIO_TIMEOUT:-60}")
# cargo puts the binary under CARGO_TARGET_DIR when that is set
CONEY_BIN="${CONEY_BIN:-${CARGO_TARGET_DIR:-target}/release/coney}"

# ---------------------------------------------------------------- state
TMP="$(mktemp -d "${TMPDIR:-/tmp}/coney-test.XXXXXX")"
CONEY_PID=""
RABBIT_DIR=""
SCEN_PID=""
summary=()
total_passed=0
total_failed=0
failed_steps=0

say() { printf '\n==== %s\n' "$*"; }
record() { # step status detail
    summary+=("$(printf '%-22s %-5s %s' "$1" "$2" "${3:-}")")
    if [ "$2" = FAIL ]; then failed_steps=$((failed_steps + 1)); fi
}

stop_rabbit() {
    [ -n "$RABBIT_DIR" ] || return 0
    scripts/rabbitmq.sh stop "$RABBIT_DIR" || true
    RABBIT_DIR=""
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$SCEN_PID" ]; then   # run.py kills its current scenario on SIGTERM
        kill -TERM "$SCEN_PID" 2>/dev/null || true
        wait "$SCEN_PID" 2>/dev/null || true
    fi
    coney_stop || true
    stop_rabbit
    if [ "${KEEP_TMP:-0}" = 1 ]; then
        echo "test.sh: scratch directory kept: $TMP" >&2
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "test.sh: interrupted" >&2; exit 130' INT TERM

# add_counts FILE: add the "N passed, M failed" totals found in FILE
add_counts() {
    local p f
    read -r p f < <(python3 - "$1" <<'EOF'
import re, sys
text = open(sys.argv[1], errors='replace').read()
p = f = 0
# cargo: "test result: ok. 12 passed; 0 failed; ..."
for m in re.finditer(r'^test result: \w+\. (\d+) passed; (\d+) failed', text, re.M):
    p += int(m.group(1)); f += int(m.group(2))
# run.py: final "N passed, M failed"
for m in re.finditer(r'^(\d+) passed, (\d+) failed$', text, re.M):
    p += int(m.group(1)); f += int(m.group(2))
print(p, f)
EOF
)
    total_passed=$((total_passed + p))
    total_failed=$((total_failed + f))
    LAST_COUNTS="$p passed, $f failed"
}

# run_step LABEL LOG CMD...: runs CMD (bounded by its own timeout), its output shown and
# tee'd to LOG, then adds the counts found in LOG and records LABEL; a failure that counted no
# failed test (e.g. the runner itself broke) still counts as one. Returns CMD's status.
run_step() {
    local label="$1" out="$2" rc=0
    shift 2
    # in the background + wait, so that a signal to test.sh is handled at once
    "$@" > >(tee "$out") 2>&1 &
    SCEN_PID=$!
    wait "$SCEN_PID" || rc=$?
    SCEN_PID=""
    sleep 0.2   # let tee flush
    add_counts "$out"
    if [ "$rc" = 0 ]; then
        record "$label" PASS "$LAST_COUNTS"
    else
        record "$label" FAIL "$LAST_COUNTS (rc=$rc)"
        case "$LAST_COUNTS" in *" 0 failed") total_failed=$((total_failed + 1)) ;; esac
    fi
    return "$rc"
}

# run_scenarios LABEL PORT LOG: run.py against 127.0.0.1:PORT, output tee'd to LOG
run_scenarios() {
    run_step "scenarios ($1)" "$3" env AMQP_HOST=127.0.0.1 AMQP_PORT="$2" \
        timeout 1800 python3 tests/scenarios/run.py "${run_args[@]}"
}

# ---------------------------------------------------------------- build
built=0
if [ "$do_build" = 1 ]; then
    say "cargo build --release"
    if cargo build --release; then
        record "cargo build" PASS
        built=1
    else
        record "cargo build" FAIL
        total_failed=$((total_failed + 1))
    fi
elif [ -x "$CONEY_BIN" ]; then
    built=1
fi

# ---------------------------------------------------------------- cargo test
if [ "$do_cargo" = 1 ]; then
    say "cargo test --release"
    if cargo test --release 2>&1 | tee "$TMP/cargo-test.log"; then
        add_counts "$TMP/cargo-test.log"
        record "cargo test" PASS "$LAST_COUNTS"
    else
        add_counts "$TMP/cargo-test.log"
        record "cargo test" FAIL "$LAST_COUNTS"
        # e.g. a compile error: no failed test counted, still a failure
        case "$LAST_COUNTS" in *" 0 failed") total_failed=$((total_failed + 1)) ;; esac
    fi
fi

# ---------------------------------------------------------------- pyenv
pyenv_ok=1
if [ "$do_coney" = 1 ] || [ "$do_durability" = 1 ] || [ "$do_rabbit" = 1 ]; then
    say "scripts/pyenv.sh"
    if scripts/pyenv.sh; then
        record "pyenv" PASS
    else
        record "pyenv" FAIL
        total_failed=$((total_failed + 1))
        pyenv_ok=0
    fi
fi

# ---------------------------------------------------------------- coney
if [ "$do_coney" = 1 ] && [ "$pyenv_ok" = 1 ]; then
    say "scenarios against coney"
    if [ "$built" != 1 ] || [ ! -x "$CONEY_BIN" ]; then
        record "scenarios (coney)" FAIL "no $CONEY_BIN"
        total_failed=$((total_failed + 1))
    else
        port="$(free_port)"
        mkdir -p "$TMP/data"
        CONEY_LOG="$TMP/coney.log"
        if ! coney_start "$port" 30 "$CONEY_LOG" "$CONEY_BIN" --listen "127.0.0.1:$port" \
            --data-dir "$TMP/data" --log-level info; then
            record "scenarios (coney)" FAIL "coney did not start"
            total_failed=$((total_failed + 1))
        else
            echo "coney pid $CONEY_PID listening on 127.0.0.1:$port (log $CONEY_LOG)"
            srv_rc=0
            run_scenarios coney "$port" "$TMP/scenarios-coney.log" || srv_rc=$?
            if ! pid_alive "$CONEY_PID"; then
                echo "test.sh: coney died during the scenarios" >&2
                record "coney alive" FAIL "the broker exited during the scenarios"
                total_failed=$((total_failed + 1))
                srv_rc=1
            fi
            coney_stop || true
            if [ "$srv_rc" != 0 ] || [ "$verbose" = 1 ]; then
                echo "---- tail of coney log ($CONEY_LOG) ----"
                tail -n 80 "$CONEY_LOG" || true
            fi
        fi
    fi
fi

# ---------------------------------------------------------------- durability
if [ "$do_durability" = 1 ] && [ "$pyenv_ok" = 1 ]; then
    say "durability tests against coney"
    if [ "$built" != 1 ] || [ ! -x "$CONEY_BIN" ]; then
        record "durability (coney)" FAIL "no $CONEY_BIN"
        total_failed=$((total_failed + 1))
    else
        # run.py starts and stops its own brokers (SIGTERM/SIGKILL) and kills each test
        # with everything it started at its time limit
        run_step "durability (coney)" "$TMP/durability.log" \
            timeout 600 .venv/pika1/bin/python tests/durability/run.py --coney "$CONEY_BIN" \
            ${dur_args[@]+"${dur_args[@]}"} || true
    fi
fi

# ---------------------------------------------------------------- rabbitmq definitions
if [ "$do_rmq_defs" = 1 ]; then
    say "access control and definitions against RabbitMQ"
    if scripts/rabbitmq.sh install; then
        port="$(free_port)"
        RABBIT_DIR="$TMP/rabbitmq-defs"
        if beam="$(scripts/rabbitmq.sh start "$port" "$RABBIT_DIR")"; then
            echo "rabbitmq beam.smp pid $beam on 127.0.0.1:$port"
            # The access tests first: the definitions tests reset the node.
            run_step "access (rabbitmq)" "$TMP/access-rabbitmq.log" env \
                CONEY_TEST_ADDR="127.0.0.1:$port" CONEY_RABBITMQ_DIR="$RABBIT_DIR" \
                timeout 900 cargo test --release --test amqp access_ || true
            run_step "definitions (rabbitmq)" "$TMP/definitions-rabbitmq.log" env \
                CONEY_RABBITMQ_DIR="$RABBIT_DIR" timeout 900 cargo test --release \
                --test rabbitmq_definitions -- --ignored --test-threads=1 || true
            stop_rabbit
        else
            RABBIT_DIR=""
            record "definitions (rabbitmq)" FAIL "RabbitMQ did not start"
            total_failed=$((total_failed + 1))
        fi
    else
        record "definitions (rabbitmq)" FAIL "could not install rabbitmq-server"
        total_failed=$((total_failed + 1))
    fi
fi

# ---------------------------------------------------------------- TLS
if [ "$do_tls" = 1 ]; then
    say "TLS (amqps) tests against coney"
    if [ "$built" != 1 ] || [ ! -x "$CONEY_BIN" ]; then
        record "tls (coney)" FAIL "no $CONEY_BIN"
        total_failed=$((total_failed + 1))
    else
        run_step "tls (coney)" "$TMP/tls.log" timeout 900 bash scripts/test-tls.sh "$CONEY_BIN" || true
    fi
fi

# ---------------------------------------------------------------- shovels
if [ "$do_shovel" = 1 ]; then
    say "shovel tests against coney and RabbitMQ"
    if [ "$built" != 1 ] || [ ! -x "$CONEY_BIN" ]; then
        record "shovel (coney)" FAIL "no $CONEY_BIN"
        total_failed=$((total_failed + 1))
    else
        run_step "shovel (coney)" "$TMP/shovel.log" timeout 900 bash scripts/test-shovel.sh "$CONEY_BIN" || true
    fi
fi

# ---------------------------------------------------------------- federation
if [ "$do_federation" = 1 ]; then
    say "federation tests against RabbitMQ and coney"
    if [ "$built" != 1 ] || [ ! -x "$CONEY_BIN" ]; then
        record "federation (coney)" FAIL "no $CONEY_BIN"
        total_failed=$((total_failed + 1))
    else
        run_step "federation (coney)" "$TMP/federation.log" timeout 600 bash scripts/test-federation.sh "$CONEY_BIN" || true
    fi
fi

# ---------------------------------------------------------------- management API
if [ "$do_mgmt" = 1 ]; then
    say "management API, Prometheus, rabbitmqadmin and the web page (headless Chromium)"
    if [ "$built" != 1 ] || [ ! -x "$CONEY_BIN" ]; then
        record "mgmt (coney)" FAIL "no $CONEY_BIN"
        total_failed=$((total_failed + 1))
    else
        run_step "mgmt (coney)" "$TMP/mgmt.log" timeout 1500 bash scripts/test-mgmt.sh coney "$CONEY_BIN" || true
    fi
    if [ "$do_rabbit" = 1 ]; then
        run_step "mgmt (rabbitmq)" "$TMP/mgmt-rabbitmq.log" timeout 1500 bash scripts/test-mgmt.sh rabbitmq || true
    fi
fi

# ---------------------------------------------------------------- rpm
if [ "$do_rpm" = 1 ]; then
    say "rpm: glibc 2.17 build, package checks, install into a scratch root"
    run_step rpm "$TMP/rpm.log" timeout 1500 bash scripts/test-rpm.sh || true
fi

# ---------------------------------------------------------------- fuzz
if [ "$do_fuzz" = 1 ]; then
    say "fuzzers, ${FUZZ_SECONDS:-15} s per target"
    fuzz_rc=0
    timeout 1200 bash scripts/fuzz.sh "${FUZZ_SECONDS:-15}" > >(tee "$TMP/fuzz.log") 2>&1 || fuzz_rc=$?
    sleep 0.2   # let tee flush
    if [ "$fuzz_rc" = 0 ]; then
        record "fuzz" PASS "$(grep -m1 -E 'SKIP|all targets ran' "$TMP/fuzz.log" || echo ran)"
    else
        record "fuzz" FAIL "rc=$fuzz_rc (see the crash input above)"
        total_failed=$((total_failed + 1))
    fi
fi

# ---------------------------------------------------------------- rabbitmq
if [ "$do_rabbit" = 1 ] && [ "$pyenv_ok" = 1 ]; then
    say "scenarios against RabbitMQ"
    if scripts/rabbitmq.sh install; then
        port="$(free_port)"
        RABBIT_DIR="$TMP/rabbitmq"
        # The shovel and federation plugins: coneyctl's live steps for shovel_status and
        # federation_status (they are skipped on a node without them).
        if beam="$(RABBITMQ_PLUGINS="rabbitmq_management rabbitmq_shovel rabbitmq_shovel_management rabbitmq_federation rabbitmq_federation_management" \
            RABBITMQ_MGMT_PORT="$(free_port)" \
            scripts/rabbitmq.sh start "$port" "$RABBIT_DIR")"; then
            echo "rabbitmq beam.smp pid $beam on 127.0.0.1:$port"
            rmq_rc=0
            run_scenarios rabbitmq "$port" "$TMP/scenarios-rabbitmq.log" || rmq_rc=$?
            if [ "$do_cargo" = 1 ]; then
                say "coneyctl live tests against RabbitMQ's management API"
                run_step "coneyctl (rabbitmq)" "$TMP/coneyctl-rabbitmq.log" \
                    env CONEYCTL_TEST_RABBITMQ_DIR="$RABBIT_DIR" CONEYCTL_TEST_RABBITMQCTL=all \
                    timeout 1200 cargo test --release --test coneyctl -- --ignored live:: || rmq_rc=$?
            fi
            if [ "$rmq_rc" != 0 ]; then
                echo "---- tail of RabbitMQ log ----"
                tail -n 40 "$RABBIT_DIR"/log/*@localhost.log 2>/dev/null || true
            fi
            stop_rabbit
        else
            RABBIT_DIR=""
            record "scenarios (rabbitmq)" FAIL "RabbitMQ did not start"
            total_failed=$((total_failed + 1))
        fi
    else
        record "scenarios (rabbitmq)" FAIL "could not install rabbitmq-server"
        total_failed=$((total_failed + 1))
    fi
fi

# ---------------------------------------------------------------- summary
say "summary"
if [ "${#summary[@]}" -eq 0 ]; then
    echo "nothing was run"
    total_failed=$((total_failed + 1))
fi
for line in "${summary[@]}"; do echo "$line"; done
echo "total: $total_passed passed, $total_failed failed"
if [ "$failed_steps" -gt 0 ] || [ "$total_failed" -gt 0 ]; then
    exit 1
fi
exit 0
