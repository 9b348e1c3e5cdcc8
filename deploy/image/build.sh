#!/usr/bin/env bash
# Builds the runnel OCI image: one static musl binary FROM scratch, no registry pulls.
#
#   deploy/image/build.sh [TAG]        # default TAG: localhost/runnel:<crate version>
#
# Needs the Rust target x86_64-unknown-linux-musl (`rustup target add x86_64-unknown-linux-musl`),
# a musl C compiler for the C parts of ring, zstd, lz4 and mimalloc (`musl-gcc`, Debian's
# musl-tools) and podman (or CONTAINER_ENGINE=docker with a running engine).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

target=x86_64-unknown-linux-musl
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
tag=${1:-localhost/runnel:$version}
engine=${CONTAINER_ENGINE:-podman}
export CC_x86_64_unknown_linux_musl=${CC_x86_64_unknown_linux_musl:-musl-gcc}

cargo build --profile image --target "$target" -p runnel-broker
binary=${CARGO_TARGET_DIR:-$PWD/target}/$target/image/runnel

# A dynamically linked binary would not start on an empty base: refuse it here, not at run time.
if readelf -l "$binary" | grep -q 'INTERP'; then
    echo "build.sh: $binary is dynamically linked; the image needs a static binary" >&2
    exit 1
fi

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp "$binary" "$context/runnel"
mkdir "$context/data"
"$engine" build --file deploy/image/Containerfile --tag "$tag" "$context"
echo "built $tag ($(du -h "$binary" | cut -f1) binary)"
