#!/usr/bin/env bash
# The management API, Prometheus and rabbitmqadmin checks (tests/mgmt/run.py) against a
# broker started here with its HTTP listeners on free loopback ports.
#
#   scripts/test-mgmt.sh coney [BIN]   coney (default target/release/coney)
#   scripts/test-mgmt.sh rabbitmq      RabbitMQ 3.10 with rabbitmq_management and
#                                      rabbitmq_prometheus (scripts/rabbitmq.sh), to prove
#                                      the checks themselves are faithful
# Then the management page's browser test (tests/webui, headless Chromium) against the same
# broker: coney serves the page itself; RabbitMQ's API is reached through tests/webui/serve.py.
# Screenshots go to $WEBUI_SHOTS (default target/webui-shots/FLAVOUR), kept as artefacts.
# Installs what the checks need: .venv/mgmt (scripts/pyenv.sh), Debian's rabbitmq-server for
# rabbitmqadmin (scripts/rabbitmq.sh install), chromium and playwright-core
# (scripts/webui-deps.sh). Extra arguments after BIN go to run.py (e.g. --only overview);
# NO_WEBUI=1 skips the browser test; for coney, coneyctl's live suite (tests/coneyctl/live.rs)
# also runs against the same broker (NO_CONEYCTL_LIVE=1 skips it). Exit status is non-zero if
# any part failed.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
. scripts/lib.sh

flavour="${1:-coney}"
shift || true
bash scripts/pyenv.sh
if [ ! -x /usr/bin/rabbitmqadmin ]; then
    bash scripts/rabbitmq.sh install >&2
fi
TMP=$(mktemp -d /tmp/coney-mgmt.XXXXXX)
amqp=$(free_port); http=$(free_port); prom=$(free_port)
cleanup() {
    case "$flavour" in
        coney) coney_stop || true ;;
        rabbitmq) bash scripts/rabbitmq.sh stop "$TMP/rmq" >/dev/null 2>&1 || true ;;
    esac
    [ -n "${KEEP_TMP:-}" ] || rm -rf "$TMP"
}
trap cleanup EXIT

case "$flavour" in
    coney)
        bin="${1:-${CONEY_BIN:-target/release/coney}}"
        shift || true
        coney_start "$amqp" 30 "$TMP/coney.log" "$bin" --listen "127.0.0.1:$amqp" \
            --data-dir "$TMP/data" --management-listen "127.0.0.1:$http" \
            --prometheus-listen "127.0.0.1:$prom"
        ;;
    rabbitmq)
        RABBITMQ_PLUGINS="rabbitmq_management rabbitmq_prometheus" RABBITMQ_MGMT_PORT=$http \
            RABBITMQ_PROMETHEUS_PORT=$prom bash scripts/rabbitmq.sh start "$amqp" "$TMP/rmq" >/dev/null
        ;;
    *) echo "usage: scripts/test-mgmt.sh coney [BIN] | rabbitmq" >&2; exit 64 ;;
esac
rc=0
timeout 600 .venv/mgmt/bin/python tests/mgmt/run.py --amqp "$amqp" --http "$http" \
    --prometheus "$prom" "$@" || rc=$?
# coneyctl's live suite (each step's output what rabbitmqctl 3.10 prints) against this coney.
if [ "$flavour" = coney ] && [ -z "${NO_CONEYCTL_LIVE:-}" ]; then
    CONEYCTL_TEST_API="127.0.0.1:$http" CONEYCTL_TEST_AMQP="127.0.0.1:$amqp" \
        timeout 1200 cargo test --release --test coneyctl -- --ignored --test-threads=1 live:: \
        >"$TMP/coneyctl-live.log" 2>&1 || rc=1
    grep -E '^test |panicked' "$TMP/coneyctl-live.log" || true
    # test.sh counts "N passed, M failed" lines that stand alone
    sed -n 's/^test result: [a-zA-Z]*\. \([0-9]*\) passed; \([0-9]*\) failed.*/\1 passed, \2 failed/p' \
        "$TMP/coneyctl-live.log"
fi
if [ -z "${NO_WEBUI:-}" ]; then
    shots="${WEBUI_SHOTS:-$ROOT/target/webui-shots/$flavour}"
    mkdir -p "$shots"
    bash scripts/webui-deps.sh
    case "$flavour" in
        coney) page=(--mgmt "http://127.0.0.1:$http/") ;;
        rabbitmq) page=(--proxy-to "$http") ;;
    esac
    bash tests/webui/run.sh --amqp "$amqp" "${page[@]}" --shots "$shots" \
        --python "$ROOT/.venv/mgmt/bin/python" | tee "$TMP/webui.log" || rc=1
    # test.sh counts "N passed, M failed" lines that stand alone
    sed -n 's/^webui: \([0-9]* passed, [0-9]* failed\)$/\1/p' "$TMP/webui.log"
    echo "screenshots: $shots"
fi
if [ "$rc" != 0 ] && [ "$flavour" = coney ]; then
    echo "---- tail of coney log" >&2
    tail -n 40 "$TMP/coney.log" >&2 || true
fi
exit "$rc"
