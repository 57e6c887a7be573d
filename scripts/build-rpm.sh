#!/usr/bin/env bash
# Packages the binaries from scripts/build-release.sh into coney-VERSION-1.x86_64.rpm with
# rpmbuild and packaging/coney.spec. Installs Debian's rpm package if rpmbuild is missing.
# Does not build: run scripts/build-release.sh first (same CARGO_TARGET_DIR).
#
# Usage: scripts/build-rpm.sh      Output: the path of the .rpm, on the last line.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release
TOP=$CARGO_TARGET_DIR/rpmbuild
VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n1)

if ! command -v rpmbuild >/dev/null 2>&1; then
    echo "build-rpm: installing rpm (rpmbuild) from Debian" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends rpm >&2 ||
        { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends rpm >&2; }
fi
for bin in coney coneyctl; do
    [ -x "$BIN/$bin" ] || { echo "build-rpm: no $BIN/$bin; run scripts/build-release.sh" >&2; exit 1; }
done

rm -rf "$TOP"
mkdir -p "$TOP/SOURCES"
cp "$BIN/coney" "$BIN/coneyctl" packaging/coney.service packaging/coney.conf packaging/coney.logrotate \
    packaging/README-install.md LICENSE "$TOP/SOURCES/"
for page in coney.8 coneyctl.1; do
    sed "s/\"coney [0-9][^\"]*\"/\"coney $VERSION\"/" "packaging/$page" >"$TOP/SOURCES/$page"
done
WITH_PERF=0
if [ -x "$BIN/coney-perf" ]; then
    cp "$BIN/coney-perf" "$TOP/SOURCES/"
    WITH_PERF=1
fi

rpmbuild -bb packaging/coney.spec \
    --target x86_64 \
    --define "_topdir $TOP" \
    --define "_sourcedir $TOP/SOURCES" \
    --define "coney_version $VERSION" \
    --define "with_perf $WITH_PERF" \
    --define "packager ${CONEY_PACKAGER:-coney authors}" >&2

RPM=$TOP/RPMS/x86_64/coney-$VERSION-1.x86_64.rpm
[ -f "$RPM" ] || { echo "build-rpm: $RPM was not built" >&2; exit 1; }
echo "$RPM"
