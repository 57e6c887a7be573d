#!/usr/bin/env bash
# The TLS (amqps) tests (tests/tls/run.py) against coney: pika over TLS, openssl s_client for
# TLS 1.2 and 1.3 handshakes, plain AMQP and a garbage-handshake flood on the TLS port while a
# canary measures its round trips, the handshake deadline, back-pressure, verify_peer, SASL
# EXTERNAL (by subject DN and by CN) and the management API's ssl_* / peer_cert_* connection
# fields. run.py generates a
# throw-away CA and certificates with openssl in a temp dir and starts its own brokers.
#
#   scripts/test-tls.sh [BIN] [run.py options, e.g. --only verify]
#
# The brokers listen on ports the kernel picks, or with CONEY_TEST_PORTS=LOW-HIGH in the
# environment on ports of that range (tests/lib/brokerlib.py free_port).
#
# Installs what it needs: .venv/pika1 (scripts/pyenv.sh) and, if missing, the openssl command
# (apt-get). The last line printed is "N passed, M failed"; the exit status is non-zero if
# anything failed.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

bin="${1:-${CONEY_BIN:-${CARGO_TARGET_DIR:-target}/release/coney}}"
shift || true
if ! command -v openssl >/dev/null 2>&1; then
    echo "test-tls: installing openssl" >&2
    timeout 300 apt-get install -y -q openssl >&2 || {
        timeout 300 apt-get update -q >&2 && timeout 300 apt-get install -y -q openssl >&2
    }
fi
bash scripts/pyenv.sh
if [ ! -x "$bin" ]; then
    echo "test-tls: no broker binary $bin (cargo build --release)" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
exec timeout 600 .venv/pika1/bin/python tests/tls/run.py --coney "$bin" "$@"
