#!/usr/bin/env bash
# Create (idempotently) the two pika virtualenvs used by tests/scenarios:
#   .venv/pika1    pika 1.3.x   (modern API)
#   .venv/pika013  pika 0.13.1  (the founding tutorial's API)
#   .venv/mgmt     pika 1.3 + prometheus_client (tests/mgmt)
# Prints nothing except errors. Exit status non-zero on failure.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"

make_venv() { # name requirement expected-version-prefix
    local dir="$ROOT/.venv/$1" req="$2" want="$3"
    if [ -x "$dir/bin/python" ] &&
       "$dir/bin/python" -c "import sys, pika; sys.exit(0 if pika.__version__.startswith('$want') else 1)" \
           >/dev/null 2>&1; then
        return 0
    fi
    rm -rf "$dir"
    mkdir -p "$ROOT/.venv"
    "$PY" -m venv "$dir" >/dev/null
    PIP_DISABLE_PIP_VERSION_CHECK=1 timeout 600 "$dir/bin/python" -m pip install -q \
        --no-input "$req" >/dev/null
    "$dir/bin/python" -c "import sys, pika; sys.exit(0 if pika.__version__.startswith('$want') else 1)" || {
        echo "pyenv.sh: $dir does not have pika $want after install" >&2
        return 1
    }
}

make_venv pika1 'pika>=1.3,<1.4' '1.3.'
make_venv pika013 'pika==0.13.1' '0.13.1'

# .venv/mgmt: tests/mgmt (pika 1.3 for AMQP traffic, prometheus_client's text-format parser
# for /metrics, the parser Prometheus's own Python client uses).
mgmt="$ROOT/.venv/mgmt"
if ! "$mgmt/bin/python" -c "import pika, prometheus_client.parser" >/dev/null 2>&1; then
    rm -rf "$mgmt"
    "$PY" -m venv "$mgmt" >/dev/null
    PIP_DISABLE_PIP_VERSION_CHECK=1 timeout 600 "$mgmt/bin/python" -m pip install -q --no-input \
        'pika>=1.3,<1.4' 'prometheus_client>=0.20,<1' >/dev/null
    "$mgmt/bin/python" -c "import pika, prometheus_client.parser" || {
        echo "pyenv.sh: $mgmt lacks pika or prometheus_client after install" >&2
        exit 1
    }
fi

# .venv/mgmt-client: tests/mgmt/pypi_client.py, the management API through a maintained PyPI
# client (amqpstorm's ManagementApi), kept apart so its dependencies (requests) do not mix
# with the checks' own.
client="$ROOT/.venv/mgmt-client"
if ! "$client/bin/python" -c "import amqpstorm.management, requests" >/dev/null 2>&1; then
    rm -rf "$client"
    "$PY" -m venv "$client" >/dev/null
    PIP_DISABLE_PIP_VERSION_CHECK=1 timeout 600 "$client/bin/python" -m pip install -q --no-input \
        'amqpstorm[management]==3.1.4' >/dev/null
    "$client/bin/python" -c "import amqpstorm.management, requests" || {
        echo "pyenv.sh: $client lacks amqpstorm's management client after install" >&2
        exit 1
    }
fi
