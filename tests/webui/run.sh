#!/usr/bin/env bash
# Run the management page's browser test (tests/webui/test.mjs) against a running broker.
#
#   tests/webui/run.sh --amqp PORT --mgmt URL --shots DIR [--python PY] [--only NAME]...
#       the management listener at URL serves the page itself at / (coney)
#   tests/webui/run.sh --amqp PORT --proxy-to PORT --shots DIR [--mgmt URL] ...
#       the page comes from tests/webui/serve.py, which serves src/mgmt/www/ and forwards
#       /api/* to the management listener on 127.0.0.1:PORT (RabbitMQ, whose own UI owns /);
#       the proxy listens on --mgmt's port if given, else on a free one
#
# Needs scripts/webui-deps.sh (chromium, playwright-core) and a pika virtualenv from
# scripts/pyenv.sh (.venv/mgmt or .venv/pika1; --python or PYTHON overrides). Screenshots go
# to DIR. Output: `PASS name` / `FAIL name: reason` lines, then `webui: N passed, M failed`;
# exit status non-zero on failure. The whole run is bounded by WEBUI_TIMEOUT seconds (300).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
die() { echo "webui/run.sh: $*" >&2; echo "webui: 0 passed, 1 failed"; exit 1; }

amqp="" mgmt="" proxy_to="" shots="" python="${PYTHON:-}" only=()
while [ $# -gt 0 ]; do
    case "$1" in
        --amqp) amqp="${2:?}"; shift ;;
        --mgmt) mgmt="${2:?}"; shift ;;
        --proxy-to) proxy_to="${2:?}"; shift ;;
        --shots) shots="${2:?}"; shift ;;
        --python) python="${2:?}"; shift ;;
        --only) only+=(--only "${2:?}"); shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done
[ -n "$amqp" ] && [ -n "$shots" ] || die "--amqp and --shots are required"
[ -n "$mgmt" ] || [ -n "$proxy_to" ] || die "give --mgmt URL, --proxy-to PORT, or both"
if [ -z "$python" ]; then
    for v in mgmt pika1; do
        if [ -x "$ROOT/.venv/$v/bin/python" ]; then python="$ROOT/.venv/$v/bin/python"; break; fi
    done
fi
[ -n "$python" ] && "$python" -c 'import pika' 2>/dev/null || die "no python with pika (run scripts/pyenv.sh)"
[ -x /usr/bin/chromium ] && [ -d "$HERE/node_modules/playwright-core" ] ||
    die "chromium or playwright-core missing (run scripts/webui-deps.sh)"

proxy_pid=""
cleanup() { if [ -n "$proxy_pid" ]; then kill "$proxy_pid" 2>/dev/null || true; wait "$proxy_pid" 2>/dev/null || true; fi; }
trap cleanup EXIT

url="$mgmt"
if [ -n "$proxy_to" ]; then
    port=0
    if [ -n "$mgmt" ]; then
        port="$(python3 -c 'import sys, urllib.parse; print(urllib.parse.urlsplit(sys.argv[1]).port or 80)' "$mgmt")"
    fi
    out="$(mktemp)"
    python3 "$HERE/serve.py" --api-port "$proxy_to" --port "$port" >"$out" 2>&1 &
    proxy_pid=$!
    for _ in $(seq 1 100); do
        grep -q '^serving ' "$out" && break
        kill -0 "$proxy_pid" 2>/dev/null || break
        sleep 0.1
    done
    url="$(sed -n 's/^serving //p' "$out")"
    [ -n "$url" ] || { cat "$out" >&2; rm -f "$out"; die "serve.py did not start"; }
    rm -f "$out"
    echo "webui: page from $url (serve.py, /api/* forwarded to 127.0.0.1:$proxy_to)" >&2
fi

mkdir -p "$shots"
cd "$HERE"
rc=0
timeout "${WEBUI_TIMEOUT:-300}" node test.mjs --url "$url" --amqp "$amqp" --shots "$shots" \
    --python "$python" "${only[@]}" || rc=$?
if [ "$rc" = 124 ]; then
    echo "FAIL webui: the run took longer than ${WEBUI_TIMEOUT:-300} s"
    echo "webui: 0 passed, 1 failed"
fi
exit "$rc"
