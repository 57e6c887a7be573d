#!/usr/bin/env bash
# Builds stripped release binaries for x86_64 Linux that need no glibc newer than 2.17
# (CentOS/RHEL 7 and every later EL): cargo-zigbuild links with zig against glibc 2.17
# symbol stubs instead of the build machine's glibc. Installs ziglang and cargo-zigbuild
# from PyPI into .venv/zig on first use (no other download). Verifies the result with objdump.
#
# Usage: scripts/build-release.sh        (honours CARGO_TARGET_DIR; default ./target)
# Output: $CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/coney and coneyctl (and
# coney-perf if the crate has that binary); the last line printed is the directory.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
GLIBC_MAX=2.17
TARGET=x86_64-unknown-linux-gnu
VENV=$ROOT/.venv/zig
# Versions this script was tested with; zig changes fast, so upgrades are deliberate.
ZIGLANG_VERSION=${ZIGLANG_VERSION:-0.17.1}
CARGO_ZIGBUILD_VERSION=${CARGO_ZIGBUILD_VERSION:-0.24.1}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

if ! "$VENV/bin/python" -m ziglang version >/dev/null 2>&1 || [ ! -x "$VENV/bin/cargo-zigbuild" ]; then
    echo "build-release: installing ziglang $ZIGLANG_VERSION and cargo-zigbuild $CARGO_ZIGBUILD_VERSION into $VENV" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        "ziglang==$ZIGLANG_VERSION" "cargo-zigbuild==$CARGO_ZIGBUILD_VERSION"
fi
export PATH=$VENV/bin:$PATH
if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx "$TARGET"; then
    rustup target add "$TARGET"
fi

# Cargo.toml keeps debug info in release builds for profiling; the shipped binary has none.
# LTO and one codegen unit come from Cargo.toml's release profile.
export CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=symbols
cargo zigbuild --release --locked --bins --target "$TARGET.$GLIBC_MAX" >&2

OUT=$CARGO_TARGET_DIR/$TARGET/release
for bin in coney coneyctl coney-perf; do
    [ -f "$OUT/$bin" ] || continue
    # The highest GLIBC_x.y symbol version the binary needs must be <= GLIBC_MAX.
    highest=$(objdump -T "$OUT/$bin" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n1)
    if [ "$(printf '%s\n%s\n' "$highest" "$GLIBC_MAX" | sort -V | tail -n1)" != "$GLIBC_MAX" ]; then
        echo "build-release: $bin needs GLIBC_$highest, newer than $GLIBC_MAX" >&2
        exit 1
    fi
    if objdump -h "$OUT/$bin" | grep -q '\.debug_info'; then
        echo "build-release: $bin is not stripped" >&2
        exit 1
    fi
    echo "build-release: $bin: highest GLIBC_$highest, $(stat -c %s "$OUT/$bin") bytes" >&2
done
echo "$OUT"
