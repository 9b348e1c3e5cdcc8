#!/usr/bin/env bash
# Fetch librdkafka's own source tree (tests included) from npm and build the library and its test-runner.
#
# Why npm: only package registries are reachable, and `@confluentinc/kafka-javascript` vendors the whole
# librdkafka tree under package/deps/librdkafka/ (1.10.1 -> librdkafka 2.15.1; Debian's source package is
# 2.0.2). The build is cached under compat-tests/.cache/librdkafka-<ver>/ and reused while the stamp file
# matches; delete that directory to rebuild. Prints the tests directory on the last line of stdout.
set -euo pipefail

NPM_PACKAGE="@confluentinc/kafka-javascript"
NPM_VERSION="${LIBRDKAFKA_NPM_VERSION:-1.10.1}"

HERE="$(cd "$(dirname "$0")" && pwd)"
COMPAT_DIR="$(cd "$HERE/../.." && pwd)"
CACHE_DIR="$COMPAT_DIR/.cache"
WORK="$CACHE_DIR/librdkafka-npm-$NPM_VERSION"
SRC="$WORK/package/deps/librdkafka"
# Bump when the build recipe changes, so cached builds are redone.
BUILD_RECIPE=2
STAMP="$WORK/.built-$BUILD_RECIPE"

if [[ -f "$STAMP" && -x "$SRC/tests/test-runner" ]]; then
    echo "$SRC/tests"
    exit 0
fi

# Headers for the codecs the compression tests exercise (lz4 and snappy are bundled in the tree), and
# RapidJSON, without which tests 0053, 0098, 0101 and 0110 skip themselves.
need=()
for pkg in zlib1g-dev libzstd-dev libssl-dev rapidjson-dev pkg-config make gcc g++ python3; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if (( ${#need[@]} )); then
    if [[ $(id -u) == 0 ]]; then
        echo "librdkafka: apt-get install ${need[*]}" >&2
        apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
    else
        echo "librdkafka: missing build packages: ${need[*]} (install them as root)" >&2
        exit 1
    fi
fi

rm -rf "$WORK"
mkdir -p "$WORK"
echo "librdkafka: npm pack $NPM_PACKAGE@$NPM_VERSION" >&2
(cd "$WORK" && npm pack --silent "$NPM_PACKAGE@$NPM_VERSION" >/dev/null && tar xzf ./*.tgz && rm -f ./*.tgz)
[[ -f "$SRC/tests/test.c" ]] || { echo "librdkafka: no tests/ in $SRC" >&2; exit 1; }

jobs="${BUILD_JOBS:-$(nproc)}"
cd "$SRC"
# No network at configure time (no --install-deps); SASL/GSSAPI and libcurl (OIDC) are not needed: the
# auth tests are skipped (runnel has no SASL/TLS yet, see allowlist.txt).
echo "librdkafka: configure + make libs -j$jobs" >&2
./configure --disable-gssapi --disable-curl >"$WORK/configure.log" 2>&1 \
    || { tail -40 "$WORK/configure.log" >&2; exit 1; }
make -j"$jobs" libs >"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log" >&2; exit 1; }
echo "librdkafka: make -C tests build -j$jobs" >&2
make -j"$jobs" -C tests build >>"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log" >&2; exit 1; }
date -u +%FT%TZ >"$STAMP"
echo "$SRC/tests"
