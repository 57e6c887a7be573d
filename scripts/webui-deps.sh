#!/usr/bin/env bash
# Install what tests/webui needs, idempotently: Debian's chromium (apt-get, only when
# /usr/bin/chromium is missing; needs root) and playwright-core from package-lock.json into
# tests/webui/node_modules (npm ci; playwright-core downloads no browser, the test drives
# Debian's). The pika virtualenv comes from scripts/pyenv.sh.
#   scripts/webui-deps.sh
# Prints nothing but progress on stderr; exit status non-zero on failure.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log() { echo "webui-deps.sh: $*" >&2; }

if [ ! -x /usr/bin/chromium ]; then
    [ "$(id -u)" = 0 ] || { log "/usr/bin/chromium is missing and installing it needs root"; exit 1; }
    command -v apt-get >/dev/null || { log "/usr/bin/chromium is missing and there is no apt-get"; exit 1; }
    log "installing Debian's chromium"
    (
        export DEBIAN_FRONTEND=noninteractive
        timeout 900 apt-get update -q >&2
        timeout 1800 apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core >&2
    )
fi
/usr/bin/chromium --version >/dev/null 2>&1 || { log "/usr/bin/chromium does not run"; exit 1; }

command -v npm >/dev/null || { log "npm is missing (Debian: apt-get install nodejs npm)"; exit 1; }
# playwright-core 1.65 declares node >= 20 (Debian 12's own nodejs is 18; this image has 20).
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' ||
    { log "node $(node --version) is too old for playwright-core (needs 20 or later)"; exit 1; }
web="$ROOT/tests/webui"
want="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["packages"]["node_modules/playwright-core"]["version"])' \
    "$web/package-lock.json")"
have="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' \
    "$web/node_modules/playwright-core/package.json" 2>/dev/null || true)"
if [ "$have" != "$want" ]; then
    log "installing playwright-core $want into tests/webui/node_modules"
    (cd "$web" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 timeout 600 npm ci --no-audit --no-fund --loglevel=error >&2)
fi
