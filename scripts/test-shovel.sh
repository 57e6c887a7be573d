#!/usr/bin/env bash
# The shovel tests (tests/shovel/run.py) against coney and two private RabbitMQ 3.10 nodes
# with the rabbitmq_shovel and rabbitmq_shovel_management plugins: validation and the
# parameter API side by side with RabbitMQ's, both directions, status, src-delete-after,
# persistence, static shovels, reconnects, a canary's round trip, the chaos runs (kill -9
# of coney, restart and kill -9 of RabbitMQ, in the middle of 50,000 persistent messages), and an
# application's migration both ways (definitions export/import and a shovel).
#
#   scripts/test-shovel.sh [BIN] [run.py options, e.g. --only chaos | --bench | --ports 5760]
#
# Installs what it needs: rabbitmq-server (scripts/rabbitmq.sh install) and .venv/pika1
# (scripts/pyenv.sh). The last line printed is "N passed, M failed"; the exit status is
# non-zero if anything failed.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

bin="${1:-${CONEY_BIN:-${CARGO_TARGET_DIR:-target}/release/coney}}"
shift || true
bash scripts/rabbitmq.sh install
bash scripts/pyenv.sh
if [ ! -x "$bin" ]; then
    echo "test-shovel: no broker binary $bin (cargo build --release)" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
exec timeout 900 .venv/pika1/bin/python tests/shovel/run.py --coney "$bin" "$@"
