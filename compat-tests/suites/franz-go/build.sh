#!/usr/bin/env bash
# Fetch franz-go (module zip from the Go module proxy; it includes the _test.go files) and compile the
# pkg/kgo test binary once. Cached under compat-tests/.cache/franz-go-<ver>/; the module cache is
# read-only, so the module is copied out of it. Prints the pkg/kgo directory on the last line of stdout.
set -euo pipefail

VERSION="${FRANZ_GO_VERSION:-v1.22.3}"
HERE="$(cd "$(dirname "$0")" && pwd)"
COMPAT_DIR="$(cd "$HERE/../.." && pwd)"
WORK="$COMPAT_DIR/.cache/franz-go-$VERSION"
BIN="$WORK/kgo.test"

if [[ -x "$BIN" && -f "$WORK/.built" ]]; then
    echo "$WORK/pkg/kgo"
    exit 0
fi
command -v go >/dev/null || { echo "franz-go: go is not installed" >&2; exit 1; }

dir="$(go mod download -json "github.com/twmb/franz-go@$VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
rm -rf "$WORK"
cp -r "$dir" "$WORK"
chmod -R u+w "$WORK"
echo "franz-go: go test -c ./pkg/kgo ($VERSION)" >&2
(cd "$WORK" && go test -c -o "$BIN" ./pkg/kgo/ >&2)
date -u +%FT%TZ >"$WORK/.built"
echo "$WORK/pkg/kgo"
