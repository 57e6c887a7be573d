#!/usr/bin/env bash
# The federation tests (tests/federation/run.py): federated exchanges configured on the
# downstream as on RabbitMQ (federation-upstream parameter + policy), one upstream RabbitMQ
# 3.10 node and each test run twice, with the downstream a RabbitMQ node with the
# rabbitmq_federation plugins (the reference) and with the downstream coney: forwarding with
# headers and x-received-from, binding sync, link status and no busy loop, nothing confirmed
# lost across downstream and upstream restarts, max-hops, validation, definitions, a canary.
#
#   scripts/test-federation.sh [BIN] [run.py options: --only NAME | --ports 5800 | --reference-only]
#
# Installs what it needs: rabbitmq-server (scripts/rabbitmq.sh install) and .venv/pika1
# (scripts/pyenv.sh). The last line printed is "N passed, M failed"; the exit status is
# non-zero if anything failed.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

bin="${CONEY_BIN:-${CARGO_TARGET_DIR:-target}/release/coney}"
case "${1:-}" in ''|-*) ;; *) bin="$1"; shift ;; esac
bash scripts/rabbitmq.sh install
bash scripts/pyenv.sh
reference_only=0
for a in "$@"; do [ "$a" = --reference-only ] && reference_only=1; done
if [ "$reference_only" = 0 ] && [ ! -x "$bin" ]; then
    echo "test-federation: no broker binary $bin (cargo build --release)" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
exec timeout 600 .venv/pika1/bin/python tests/federation/run.py --coney "$bin" "$@"
